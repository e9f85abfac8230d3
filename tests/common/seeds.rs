//! The seeds a simulator test runs: its own list, or `P2P_SIM_SEEDS` ("7" or
//! "0..1000") in its place.

/// `default`, unless `P2P_SIM_SEEDS` names others.
pub fn from_env(default: impl IntoIterator<Item = u64>) -> Vec<u64> {
    let Ok(spec) = std::env::var("P2P_SIM_SEEDS") else {
        return default.into_iter().collect();
    };
    let parse = |s: &str| s.trim().parse::<u64>().expect("P2P_SIM_SEEDS: a number");
    match spec.split_once("..") {
        Some((a, b)) => (parse(a)..parse(b)).collect(),
        None => vec![parse(&spec)],
    }
}
