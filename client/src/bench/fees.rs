//! Internet Computer fees used to turn instruction counts and bytes into cycles and USD
//! (13-node application subnet; `../../docs/benchmarks.md` cites the sources).

/// Base fee of every update message execution (ingress updates and timers alike).
pub const UPDATE_MESSAGE_CYCLES: u64 = 5_000_000;
/// Cycles per executed wasm instruction.
pub const CYCLES_PER_INSTRUCTION: u64 = 1;
/// Base fee of receiving one ingress message.
pub const INGRESS_MESSAGE_CYCLES: u64 = 1_200_000;
/// Fee per byte of an ingress message.
pub const INGRESS_BYTE_CYCLES: u64 = 2_000;
/// 1 T cycles = 1 XDR; 1 XDR is about this many USD.
pub const USD_PER_XDR: f64 = 1.35;
pub const CYCLES_PER_XDR: f64 = 1e12;

/// Cycles of one round's messages.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct RoundCycles {
    pub execution: u64,
    pub ingress: u64,
}

impl RoundCycles {
    /// `executions` messages executing `instructions` in all, of which `ingress_messages`
    /// arrived as ingress carrying `ingress_bytes` bytes in all.
    pub fn new(
        executions: u64,
        instructions: u64,
        ingress_messages: u64,
        ingress_bytes: u64,
    ) -> Self {
        RoundCycles {
            execution: executions * UPDATE_MESSAGE_CYCLES + instructions * CYCLES_PER_INSTRUCTION,
            ingress: ingress_messages * INGRESS_MESSAGE_CYCLES
                + ingress_bytes * INGRESS_BYTE_CYCLES,
        }
    }

    pub fn total(&self) -> u64 {
        self.execution + self.ingress
    }

    pub fn usd(&self) -> f64 {
        cycles_to_usd(self.total())
    }
}

pub fn cycles_to_usd(cycles: u64) -> f64 {
    cycles as f64 / CYCLES_PER_XDR * USD_PER_XDR
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_mib_chunk_costs_about_two_billion_cycles() {
        // DESIGN.md: receiving a 1 MiB chunk costs about 2.1 B cycles.
        let c = RoundCycles::new(1, 0, 1, 1 << 20);
        assert_eq!(c.ingress, 1_200_000 + 2_000 * 1_048_576);
        assert!((c.total() as f64 - 2.1e9).abs() < 0.05e9);
        assert!((cycles_to_usd(1_000_000_000_000) - 1.35).abs() < 1e-12);
    }
}
