"""Dataset synthesis, the on-disk format and its readers (see ``docs/dataset.md``).

Example:
    >>> import tempfile
    >>> data = synthesize_sequence(1, 5, "following", "overcast", num_frames=3,
    ...                            view_hw=(32, 48), town_blocks=(2, 2))
    >>> root = tempfile.mkdtemp()
    >>> _ = write_sequence(root, "train", 0, data)
    >>> SequenceDataset(root, "train")[0].frames.shape
    (2, 3, 64, 96, 3)
"""

from shareverse_env.data.format import SequenceData, read_dataset_info, write_dataset_info, write_sequence
from shareverse_env.data.reader import SequenceDataset, read_sequence, verify_sequence
from shareverse_env.data.synthesis import synthesize_sequence

__all__ = [
    "SequenceData",
    "SequenceDataset",
    "read_dataset_info",
    "read_sequence",
    "synthesize_sequence",
    "verify_sequence",
    "write_dataset_info",
    "write_sequence",
]
