"""coco"""
