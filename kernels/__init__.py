"""CUDA sources of rtface, installed as the package data ``rtface.kernels``."""
