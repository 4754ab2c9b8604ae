"""Demo checkpoints, sample images and the demo dataset shipped with fishspine."""
