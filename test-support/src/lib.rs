//! Private servers for tests (being written).
