"""What a ``nas search`` checkpoint is: a supernet to continue searching with, not a network to run."""

from __future__ import annotations

from typing import Any

from ..engine.checkpoint import Restored, TaskFiles, read_training_record
from ..errors import CheckpointError
from ..models.checkpoint import CheckpointFile

__all__ = ["SearchFiles"]


class SearchFiles(TaskFiles):
    task = "nas-search"
    noun = "a `nas search` supernet"
    commands = "`mobilenext nas search --resume`"

    def owns(self, file: CheckpointFile) -> bool:
        record = read_training_record(file.contents)
        return record is not None and record.task == self.task

    def restore(self, file: CheckpointFile, **options: Any) -> Restored:
        raise self.not_mine(file, "a network to run")

    def not_mine(self, file: CheckpointFile, wanted: str) -> CheckpointError:
        return CheckpointError(
            f"{file.path} is a `nas search` supernet, not a network to run; train its genotype with "
            f"`mobilenext nas train --genotype {file.path.parent / 'genotype.json'}` and use that run's checkpoint."
        )
