"""Pure computation on a device: activations, CAMs, gradient traces, graphs, COCO evaluation, figures."""
