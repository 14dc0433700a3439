"""The S3 server fixture for the backup tests."""

from tests.s3server import s3  # noqa: F401  (the fixture, for every test here)
