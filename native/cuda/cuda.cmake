# Placeholder-free: replaced by the CUDA build rules below once the CUDA backend lands.
