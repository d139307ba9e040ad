"""Class names of the published datasets, index = label (the authors' order): one definition, used by the raw
converters and the issues lists without either importing the other."""

ROMAN_CLASSES = ["i", "ii", "iii", "iv", "v", "vi", "vii", "viii", "ix", "x"]
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
