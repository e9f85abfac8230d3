//! Test harnesses over the node core, kept out of the production modules.

mod pair;
