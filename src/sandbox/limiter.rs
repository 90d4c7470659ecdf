//! What one execution's store may allocate: linear memory (all memories summed), table elements
//! (all tables summed), and how many instances, memories and tables it may create.

use crate::settings::limits::Limits;

/// Caps a store's allocations. wasmtime's `StoreLimits` caps each memory on its own, which a
/// component with several memories could use to exceed the total; this sums them.
pub(crate) struct MemoryLimiter {
    limit: u64,
    used: u64,
    hit: bool,
    table_elements: usize,
    max_table_elements: usize,
    instances: usize,
    memories: usize,
    tables: usize,
}

impl MemoryLimiter {
    pub(crate) fn new(limits: &Limits) -> Self {
        Self {
            limit: limits.memory,
            used: 0,
            hit: false,
            table_elements: 0,
            max_table_elements: limits.max_table_elements,
            instances: limits.max_instances,
            memories: limits.max_memories,
            tables: limits.max_tables,
        }
    }

    /// Whether a memory growth was refused because of the limit.
    pub(crate) fn was_hit(&self) -> bool {
        self.hit
    }
}

impl wasmtime::ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let growth = desired.saturating_sub(current) as u64;
        match self.used.checked_add(growth) {
            Some(total) if total <= self.limit => {
                self.used = total;
                Ok(true)
            }
            _ => {
                self.hit = true;
                Ok(false)
            }
        }
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let total = self
            .table_elements
            .saturating_add(desired.saturating_sub(current));
        if total > self.max_table_elements {
            return Ok(false);
        }
        self.table_elements = total;
        Ok(true)
    }

    fn instances(&self) -> usize {
        self.instances
    }

    fn memories(&self) -> usize {
        self.memories
    }

    fn tables(&self) -> usize {
        self.tables
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmtime::ResourceLimiter as _;

    #[test]
    fn sums_every_memory_and_every_table() {
        let limits = Limits {
            memory: 100,
            max_table_elements: 10,
            ..Limits::default()
        };
        let mut limiter = MemoryLimiter::new(&limits);
        assert!(limiter.memory_growing(0, 60, None).unwrap());
        assert!(limiter.memory_growing(0, 40, None).unwrap());
        assert!(!limiter.was_hit());
        assert!(!limiter.memory_growing(40, 41, None).unwrap());
        assert!(limiter.was_hit());
        assert!(limiter.table_growing(0, 6, None).unwrap());
        assert!(limiter.table_growing(0, 4, None).unwrap());
        assert!(!limiter.table_growing(4, 5, None).unwrap());
    }
}
