"""The quickstart: the whole life of a small model in one command, on a corpus every machine has.

pipeline.py  prepare -> plan -> pretrain -> sample -> fine-tune -> prompt -> evaluate -> report (`cgpt quickstart`)
tasks.py     labelled tasks derived from the Python standard library itself, with real labels and held-out splits
"""
