"""The backend layer: everything that differs between TensorFlow, JAX and
PyTorch, and between CPU, GPU and TPU, and nothing above it branches on a
backend's name.

    selection    which backend a command runs on, chosen before Keras is imported
    devices      which backend and device this is (`devices`, `device_kind`)
    policy       what "auto" picks there: fast paths, precision, jit, pipeline
    fastpaths    switching a model's layers to the fast implementations
    geometry     convolution sizes and padding, shifted depthwise sums
    jax_kernels, torch_kernels, affine   the implementations themselves
    collectives  JAX's gather and sharded forward pass, TensorFlow's one-replica call
    allocator    the one process-wide switch (glibc keeping freed memory)

Importing this package imports no backend; import its modules by name.
"""
