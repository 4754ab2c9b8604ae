"""The input normalisation every zoo model and detector expects (ImageNet's channel statistics).

Torch-free, so the image loader can import it before torch is up.
"""

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
