"""The ground floor of the network code: building blocks shared by the model and the poolers.

``activations`` (sigmoid, PReLU, ReLU, Dice and the one factory ``make_activation``) and ``mlp``
(the MLP block). Nothing here imports the rest of dinbench, so both ``dinbench.model`` and
``dinbench.poolers`` can use it without pointing back up.
"""

ACTIVATIONS = ("prelu", "dice", "sigmoid", "relu")  # here, not in activations.py: config and --help need no torch
