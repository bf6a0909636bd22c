//! Ranges of costs and sizes, with cel-go's arithmetic (`checker/cost.go`): saturating,
//! and rounding up where a cost factor applies.

/// A range of costs or of sizes; arithmetic saturates, as cel-go's does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Range {
    pub min: u64,
    pub max: u64,
}

impl Range {
    pub const fn exact(n: u64) -> Range {
        Range { min: n, max: n }
    }
    pub const UNKNOWN_SIZE: Range = Range {
        min: 0,
        max: u64::MAX,
    };
    pub fn add(self, o: Range) -> Range {
        Range {
            min: self.min.saturating_add(o.min),
            max: self.max.saturating_add(o.max),
        }
    }
    pub fn multiply(self, o: Range) -> Range {
        Range {
            min: self.min.saturating_mul(o.min),
            max: self.max.saturating_mul(o.max),
        }
    }
    pub fn union(self, o: Range) -> Range {
        Range {
            min: self.min.min(o.min),
            max: self.max.max(o.max),
        }
    }
    /// `MultiplyByCostFactor`: rounds up; `as` saturates where the product overflows.
    pub fn factor(self, f: f64) -> Range {
        Range {
            min: (self.min as f64 * f).ceil() as u64,
            max: (self.max as f64 * f).ceil() as u64,
        }
    }
}
