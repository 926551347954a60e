"""Datasets: Fashion-MNIST, image folders, and the pretokenized store."""
