//! Attack tests: gossip.

#[allow(unused_imports)]
use crate::common::*;
