"""dinbench: which way of pooling a user's behaviour history works best, by how much, and why.

Data flow, one folder per stage:
    sources/   raw data -> behaviours (synthetic generator, user CSV/Parquet import)
    prepared/  the prepared-data contract: behaviours + train/valid/test samples on disk
    batches.py samples -> padded tensors, gathered on the device from the ragged behaviour store
    model/     embeddings, the pooler slot and the MLP of the Embedding&MLP CTR model
    poolers/   interchangeable user-interest poolers (one file each, one registry line)
    metrics.py AUC, GAUC, logloss
    train.py   training with model selection on validation (the loop, the run record)
    runtime.py device, threads, scoring; the local runtime (distributed.py: the DDP one)
    records.py run records on disk
    report.py  tables over run records
"""

__version__ = "0.1.0"
