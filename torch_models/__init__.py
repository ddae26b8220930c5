"""The zoo's models in PyTorch: every model built from its canonical layer list
(`torch_models.model.build`: `nn.Module`s in an `nn.Sequential`, one translation per layer kind
in `torch_models.layers`), a loss module, `torch.optim`, and one training loop
(`torch_models.train`).

Importing this package never imports tensorflow or keras.
"""
