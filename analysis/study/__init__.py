"""The study: every backbone over a set of images, reduced to mergeable sums (statistics, CKA, ERF, faithfulness)."""
