"""Sources: where a model comes from and the step it is trained with.

The zoo, torchvision, timm or a user's factory (sources), and the training step and inference pass
every measurement uses (training).
May import: store, core, the zoo, and sources.
"""
