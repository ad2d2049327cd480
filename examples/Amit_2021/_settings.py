"""The MNIST training settings the Amit (2019) scripts share (not a script itself).

Dense 784-…-10 networks trained with plain minibatch SGD (fixed step, no momentum, no weight
decay): batch 100 at step 0.05 instead of the paper's batch 500 at 0.1; Amit's multi-class hinge
loss (eqs. 4–6) with μ = 1 (the paper does not give its μ); URFB's ε = 1; one uniform initial
scale U(±0.07) for every W and R, close to the paper's Glorot-uniform bound √(6/(fan_in+fan_out))
= 0.068–0.077 of the hidden layers.
"""

MNIST_TRAINING = {
    "lr": 0.05,
    "batch_size": 100,
    "mu": 1.0,
    "epsilon": 1.0,
    "weight_scale": 0.07,
    "feedback_scale": 0.07,
}
