//! Sparse offset and time indexes (memory-mapped).
