//! `storeRef` changed: keys status records in another store move into the spec's store,
//! and their old entry is cleaned, instead of being left behind. A repair like restoring
//! lost material: it runs before observing, since every later read goes to the spec's
//! store.

use kube::runtime::events::EventType;

use crate::api::apikey::{Phase, StoreRecord};
use crate::controller::error::Error;
use crate::controller::shell::Shell;
use crate::controller::stores::{self, Placement};
use crate::store::{Slot, StoreError};

impl Shell<'_> {
    pub(in crate::controller) async fn relocate(&mut self) -> Result<(), Error> {
        // Keys move only into a store that opened; one that did not is reported by the
        // reads that follow.
        if !self.store_opened {
            return Ok(());
        }
        let here = self.store_record.clone();
        let s = &self.status;
        let held = [
            s.current_key
                .as_ref()
                .map(|k| (Slot::Current, &k.id, &k.store)),
            s.previous_key
                .as_ref()
                .map(|k| (Slot::Previous, &k.id, &k.store)),
            s.pending_key
                .as_ref()
                .and_then(|p| p.id.as_ref().map(|id| (Slot::Pending, id, &p.store))),
        ];
        let moving: Vec<(Slot, String, Option<StoreRecord>)> = held
            .into_iter()
            .flatten()
            .filter(|(_, _, record)| **record != here)
            .map(|(slot, id, record)| (slot, id.clone(), record.clone()))
            .collect();
        if moving.is_empty() {
            return Ok(());
        }
        let mut from = Vec::new();
        for (slot, id, record) in &moving {
            let placement = record.as_ref().map(Placement::of_record);
            let old = stores::open(self.ak, self.ctx, &self.ns, placement.as_ref()).await;
            // Copied before the old entry goes; a key the old store no longer has is
            // recovered from the Secret by the pass that follows, as any lost key is.
            match old.store.get(id).await {
                Ok(Some(material)) => self.store.put(id, &material, *slot).await?,
                Ok(None) | Err(StoreError::NotFound(_)) => {}
                Err(e) => return Err(e.into()),
            }
            old.store.delete(id).await?;
            from.push((old, record));
        }
        for (old, _) in &from {
            old.store.purge().await?;
        }
        let s = &mut self.status;
        for k in [s.current_key.as_mut(), s.previous_key.as_mut()]
            .into_iter()
            .flatten()
        {
            k.store = here.clone();
        }
        if let Some(p) = s.pending_key.as_mut() {
            p.store = here.clone();
        }
        let phase = self.status.phase.unwrap_or(Phase::Ready);
        self.write_status(phase).await?;
        let describe = |r: &Option<StoreRecord>| match r {
            Some(r) => format!("{} {:?} ({})", r.kind, r.name, r.location),
            None => "the built-in store".to_string(),
        };
        let mut sources: Vec<String> = from.iter().map(|(_, r)| describe(r)).collect();
        sources.dedup();
        self.event(
            EventType::Normal,
            "StoreMoved",
            format!(
                "keys moved from {} to {}; the old entry is removed",
                sources.join(", "),
                describe(&here)
            ),
        );
        Ok(())
    }
}
