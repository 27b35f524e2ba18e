"""Sparse 3-D convolution: numpy reference, Relax emitters lowered to TIR, kernel maps."""
