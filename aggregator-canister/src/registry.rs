//! The data-ownership registry: datasets, their owners, and who contributed what.

use std::ops::Bound;

use candid::Principal;
use flic_protocol::api::{
    page_limit, Contribution, ContributionPage, Dataset, DatasetError, DatasetPage, PageArgs,
    RegisterDatasetArgs, MAX_DATASETS, MAX_DATASETS_PER_OWNER, MAX_DATASET_NAME_LEN,
    MAX_DESCRIPTION_LEN, MAX_LICENSE_LEN, MAX_SAMPLE_COUNT,
};

use crate::state::{CallContext, State};
use crate::storage::records::DatasetRecord;
use crate::storage::Stored;

fn check_len(field: &str, value: &str, max: usize) -> Result<(), DatasetError> {
    if value.len() > max {
        return Err(DatasetError::FieldTooLong {
            field: field.into(),
            len: value.len() as u64,
            max: max as u64,
        });
    }
    Ok(())
}

impl State {
    /// Registers a dataset owned by the caller; returns its id.
    pub fn register_dataset(
        &mut self,
        ctx: &CallContext,
        args: RegisterDatasetArgs,
    ) -> Result<u64, DatasetError> {
        if ctx.caller == Principal::anonymous() {
            return Err(DatasetError::AnonymousCaller);
        }
        self.check_admitted(ctx.caller)
            .map_err(|caller| DatasetError::NotAllowed { caller })?;
        if args.name.trim().is_empty() {
            return Err(DatasetError::EmptyName);
        }
        check_len("name", &args.name, MAX_DATASET_NAME_LEN)?;
        check_len("license", &args.license, MAX_LICENSE_LEN)?;
        check_len("description", &args.description, MAX_DESCRIPTION_LEN)?;
        if args.sample_count == 0 {
            return Err(DatasetError::ZeroSampleCount);
        }
        if args.sample_count > MAX_SAMPLE_COUNT {
            return Err(DatasetError::SampleCountTooLarge {
                got: args.sample_count,
                max: MAX_SAMPLE_COUNT,
            });
        }
        if let Some(dataset_id) = self.commitments.get(&args.commitment.into_array()) {
            return Err(DatasetError::CommitmentTaken { dataset_id });
        }
        if self.datasets.len() >= MAX_DATASETS {
            return Err(DatasetError::RegistryFull { max: MAX_DATASETS });
        }
        let owned = self
            .datasets_by_owner
            .range((ctx.caller, 0)..=(ctx.caller, u64::MAX))
            .count() as u64;
        if owned >= MAX_DATASETS_PER_OWNER {
            return Err(DatasetError::TooManyDatasets {
                max: MAX_DATASETS_PER_OWNER,
            });
        }
        let mut ids = self.allocators().clone();
        let id = ids.next_dataset_id;
        ids.next_dataset_id += 1;
        let dataset = DatasetRecord {
            id,
            owner: ctx.caller,
            name: args.name,
            commitment: args.commitment,
            sample_count: args.sample_count,
            license: args.license,
            description: args.description,
            registered_at_ns: ctx.now,
            revoked_at_ns: None,
        };
        self.commitments.insert(dataset.commitment.into_array(), id);
        self.datasets.insert(id, Stored(dataset));
        self.datasets_by_owner.insert((ctx.caller, id), ());
        self.set_allocators(ids);
        Ok(id)
    }

    /// Revokes a dataset: no further submissions may use it; history keeps its attribution.
    pub fn revoke_dataset(
        &mut self,
        ctx: &CallContext,
        dataset_id: u64,
    ) -> Result<(), DatasetError> {
        let Some(Stored(mut d)) = self.datasets.get(&dataset_id) else {
            return Err(DatasetError::UnknownDataset { dataset_id });
        };
        if d.owner != ctx.caller {
            return Err(DatasetError::NotOwner {
                dataset_id,
                owner: d.owner,
            });
        }
        if d.revoked_at_ns.is_some() {
            return Err(DatasetError::AlreadyRevoked { dataset_id });
        }
        d.revoked_at_ns = Some(ctx.now);
        self.datasets.insert(dataset_id, Stored(d));
        Ok(())
    }

    pub fn dataset(&self, dataset_id: u64) -> Option<Dataset> {
        self.datasets.get(&dataset_id).map(|s| s.0.into())
    }

    pub fn list_datasets(&self, page: PageArgs) -> DatasetPage {
        let limit = page_limit(page.limit);
        let mut items: Vec<Dataset> = self
            .datasets
            .range(page.start..)
            .take(limit + 1)
            .map(|e| e.value().0.into())
            .collect();
        let next = (items.len() > limit).then(|| items.pop().expect("limit + 1 items").id);
        DatasetPage { items, next }
    }

    pub fn contribution(&self, index: u64) -> Option<Contribution> {
        self.contributions
            .get(&index)
            .map(|s| s.0.contribution.into())
    }

    fn page_of(&self, indices: impl Iterator<Item = u64>, limit: usize) -> ContributionPage {
        let mut idx: Vec<u64> = indices.take(limit + 1).collect();
        let next = (idx.len() > limit).then(|| idx.pop().expect("limit + 1 items"));
        let items = idx
            .into_iter()
            .map(|i| self.contribution(i).expect("indexed contribution exists"))
            .collect();
        ContributionPage { items, next }
    }

    /// Contributions of `contributor` with index `>= page.start`, oldest first.
    pub fn contributions_by_contributor(
        &self,
        contributor: Principal,
        page: PageArgs,
    ) -> ContributionPage {
        let keys = self
            .by_contributor
            .keys_range((contributor, page.start)..=(contributor, u64::MAX))
            .map(|(_, i)| i);
        self.page_of(keys, page_limit(page.limit))
    }

    /// Contributions made with `dataset_id` with index `>= page.start`, oldest first.
    pub fn contributions_by_dataset(&self, dataset_id: u64, page: PageArgs) -> ContributionPage {
        let keys = self
            .by_dataset
            .keys_range((dataset_id, page.start)..=(dataset_id, u64::MAX))
            .map(|(_, i)| i);
        self.page_of(keys, page_limit(page.limit))
    }

    /// Contributions with global index in `[page.start, end)`.
    pub(crate) fn contributions_range(&self, end: u64, page: PageArgs) -> ContributionPage {
        let start = page.start.min(end);
        self.page_of(start..end, page_limit(page.limit))
    }

    /// Principals with at least one contribution (one index seek per principal).
    pub fn distinct_contributors(&self) -> u64 {
        let mut n = 0;
        let mut next = self.by_contributor.keys().next();
        while let Some((p, _)) = next {
            n += 1;
            next = self
                .by_contributor
                .keys_range((Bound::Excluded((p, u64::MAX)), Bound::Unbounded))
                .next();
        }
        n
    }
}
