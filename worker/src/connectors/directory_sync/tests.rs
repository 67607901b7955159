//! Unit tests of directory sync runs.
