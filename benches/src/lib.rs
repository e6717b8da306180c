//! Load generators and comparison runs for the store (issue 8 on).
