"""The zoo's models in PyTorch (`nn.Module`, a loss module, `torch.optim`).

Importing this package never imports tensorflow or keras.
"""
