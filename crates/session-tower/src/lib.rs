//! Placeholder: the tower-sessions adapter is being written (issue 12).
