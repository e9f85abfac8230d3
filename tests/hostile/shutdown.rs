//! Attack tests: shutdown.

#[allow(unused_imports)]
use crate::common::*;
