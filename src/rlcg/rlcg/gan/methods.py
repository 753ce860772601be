"""The methods of the paper's Table 1, by what they train (no heavy imports: the CLI checks options with these)."""

Q_ONLY_METHODS = ("sim-only", "randomized-sim")  # Q alone (rlcg.rl.qtopt)
GAN_METHODS = ("gan", "cyclegan", "rl-cyclegan")  # G (and F) with Q_real (rlcg.gan.trainer)
METHODS = Q_ONLY_METHODS + GAN_METHODS
METHODS_WITH_F = ("cyclegan", "rl-cyclegan")  # F: real -> sim, and the cycle loss
