//! One segment: a `.log` file and its two indexes.
