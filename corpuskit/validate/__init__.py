"""Record-level validation of data files for data pull requests (`corpuskit validate`).

Imports only the reader layer and the schema checkers, never transformers/datasets, so the
command starts fast enough to run from pre-commit on every commit.
"""

from corpuskit.validate.files import FileResult, validate_file
from corpuskit.validate.schemas import SCHEMA_NAMES, KindChecker, kind_of, load_schema

__all__ = ["FileResult", "KindChecker", "SCHEMA_NAMES", "kind_of", "load_schema", "validate_file"]
