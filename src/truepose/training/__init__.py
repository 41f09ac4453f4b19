"""The parts of ``truepose train``: its options and checks (``args``), the data it reads (``batches``), checkpoints
(``checkpoints``), the lock on its output folder (``lock``) and what else it writes (``outputs``). The entry point, the
loss and the loop are in ``truepose/train.py``, the module users run."""
