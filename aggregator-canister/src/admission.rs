//! Who may take part, and the controller's hand on uploads: the allow-list of an
//! `Admission::AllowList` job, and evicting an upload in progress.

use candid::Principal;
use flic_protocol::api::{AdminError, AllowListChange, PageArgs, MAX_ALLOW_LIST_CHANGE};

use crate::state::{CallContext, State};

/// A page of the allow-list, in principal order.
#[derive(candid::CandidType, serde::Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct AllowListPage {
    pub items: Vec<Principal>,
    /// Where the next page starts (an index into the list), if there is one.
    pub next: Option<u64>,
}

impl State {
    /// Adds then removes principals on the allow-list (controllers only). The list is kept
    /// whatever the job's admission, so it can be filled before switching a job to it.
    /// Returns the list's new length.
    pub fn update_allow_list(
        &mut self,
        ctx: &CallContext,
        change: AllowListChange,
    ) -> Result<u64, AdminError> {
        if !ctx.is_controller {
            return Err(AdminError::NotController { caller: ctx.caller });
        }
        let len = change.add.len() + change.remove.len();
        if len > MAX_ALLOW_LIST_CHANGE {
            return Err(AdminError::AllowListChangeTooLarge {
                len: len as u64,
                max: MAX_ALLOW_LIST_CHANGE as u64,
            });
        }
        for p in change.add {
            self.allow_list.insert(p, ());
        }
        for p in change.remove {
            self.allow_list.remove(&p);
        }
        Ok(self.allow_list.len())
    }

    pub fn allow_list_page(&self, page: PageArgs) -> AllowListPage {
        let limit = flic_protocol::api::page_limit(page.limit);
        let items: Vec<Principal> = self
            .allow_list
            .keys()
            .skip(page.start as usize)
            .take(limit)
            .collect();
        let end = page.start + items.len() as u64;
        AllowListPage {
            next: (end < self.allow_list.len()).then_some(end),
            items,
        }
    }

    /// Drops an upload in progress and frees its slot (controllers only): the way out when
    /// uploads hold the round's slots without progressing.
    pub fn evict_submission(
        &mut self,
        ctx: &CallContext,
        submission_id: u64,
    ) -> Result<(), AdminError> {
        if !ctx.is_controller {
            return Err(AdminError::NotController { caller: ctx.caller });
        }
        let s = self
            .submissions
            .get(&submission_id)
            .ok_or(AdminError::UnknownSubmission { submission_id })?
            .0;
        if s.contribution.is_some() {
            return Err(AdminError::SubmissionCommitted { submission_id });
        }
        self.drop_upload(submission_id);
        Ok(())
    }
}
