//! The follow-up writes on [`Trial`]: outcomes recorded and corrected, status
//! changes and renewed consent, each one transaction of log events.

use std::collections::BTreeMap;

use chrono::NaiveDate;

use super::{StatusKind, Written, date_of, local_date_of};
use crate::clock::{Clock, Timestamp};
use crate::error::{Error, Result};
use crate::event::{ConsentRenewed, Event, OutcomeCorrected, OutcomeRecorded, StatusChanged};
use crate::followup::{self, Correction, OutcomeEntry, Subject};
use crate::ledger::{Trial, append, batch_error, check_user, load_state};
use crate::protocol::Protocol;
use crate::referral::truncate;
use crate::store::{Head, Tx};

/// The participant's record as the rules need it; `Err` if not randomised.
fn subject(tx: &Tx, participant: &str, zone: chrono_tz::Tz) -> Result<std::result::Result<Subject, String>> {
    let Some(p) = tx.subject(participant)? else {
        let msg = if tx.referral_exists(participant)? {
            format!(
                "participant {participant} was screened but never randomised; outcomes are recorded only for randomised participants"
            )
        } else {
            format!(
                "unknown participant {:?}; check the id (see `chancery export --what allocations`)",
                truncate(participant, 40)
            )
        };
        return Ok(Err(msg));
    };
    let mut current: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let mut collected = BTreeMap::new();
    for (t, f, v, on) in p.current {
        // The latest collection of a value the timepoint still has (one
        // corrected to missing was, in effect, not collected).
        if !v.is_empty() {
            let on = date_of(&on);
            collected.entry(t.clone()).and_modify(|d: &mut NaiveDate| *d = (*d).max(on)).or_insert(on);
        }
        current.entry(t).or_default().insert(f, v);
    }
    Ok(Ok(Subject {
        randomised_on: local_date_of(&p.randomised_at, zone),
        no_further_contact: p.no_further_contact,
        current,
        collected,
        died_on: p.status.filter(|(s, _)| s == "died").map(|(_, on)| date_of(&on)),
    }))
}

/// A write's `--reason`, checked as every reason is ([`crate::text::reason`]).
fn checked_reason(reason: &str) -> Result<String> {
    crate::text::reason("--reason", reason).map_err(|m| Error::Input(format!("{m}; nothing was written")))
}

/// The end of a write of one event about `participant`: appends and applies
/// `event` and commits.
fn write_one(
    tx: Tx<'_>,
    protocol: &Protocol,
    head: &mut Head,
    event: &Event,
    user: &str,
    now: Timestamp,
    participant: &str,
) -> Result<Written> {
    let mut state = load_state(&tx, protocol)?;
    let (seq, entry_hash) = append(&tx, protocol, &mut state, head, event, user, now)?;
    tx.commit()?;
    Ok(Written { participant: participant.to_string(), seq, entry_hash })
}

impl Trial {
    /// Records follow-up values, one event per entry, all in one transaction.
    /// If any entry is invalid nothing is written and every bad one is listed.
    pub fn record_outcomes(
        &mut self,
        entries: &[(String, OutcomeEntry)],
        user: &str,
        clock: impl Into<Clock>,
    ) -> Result<Vec<Written>> {
        self.record_rows(entries.iter().map(|(at, e)| (at.as_str(), Ok(e))), entries.len(), user, clock)
    }

    /// [`Trial::record_outcomes`] for a file's rows, some of which may not
    /// have been readable (see [`followup::read_outcome_csv`]): if any row
    /// cannot be read or holds an invalid entry, nothing is written and every
    /// problem of either kind is listed, in file order, so one submission
    /// finds them all.
    pub fn record_outcome_rows(
        &mut self,
        rows: &crate::table_input::Rows<OutcomeEntry>,
        user: &str,
        clock: impl Into<Clock>,
    ) -> Result<Vec<Written>> {
        self.record_rows(
            rows.iter().map(|(at, r)| (at.as_str(), r.as_ref().map_err(String::as_str))),
            rows.len(),
            user,
            clock,
        )
    }

    fn record_rows<'a>(
        &mut self,
        entries: impl Iterator<Item = (&'a str, std::result::Result<&'a OutcomeEntry, &'a str>)>,
        total: usize,
        user: &str,
        clock: impl Into<Clock>,
    ) -> Result<Vec<Written>> {
        check_user(user)?;
        let protocol = &self.protocol;
        let tx = self.store.transaction()?;
        let mut head = tx.head()?;
        let now = clock.into().stamp(head.ts.as_deref())?;
        let today = now.date_in(protocol.timezone);
        let mut state = load_state(&tx, protocol)?;
        let mut problems = Vec::new();
        let mut out = Vec::with_capacity(total);
        // The last participant read, with the values this transaction has added
        // since: a file lists a participant's timepoints together, so each is
        // read from the database once (bounded memory, whatever the file's order).
        let mut last: Option<(&str, Subject)> = None;
        for (origin, e) in entries {
            let e = match e {
                Ok(e) => e,
                Err(m) => {
                    problems.push(format!("{origin}: {m}"));
                    continue;
                }
            };
            let subject = match last.take() {
                Some((p, s)) if p == e.participant => &mut last.insert((p, s)).1,
                _ => match subject(&tx, &e.participant, protocol.timezone)? {
                    Ok(s) => &mut last.insert((e.participant.as_str(), s)).1,
                    Err(m) => {
                        problems.push(format!("{origin}: {m}"));
                        continue;
                    }
                },
            };
            let values = match followup::validate_entry(protocol, subject, e, today) {
                Ok(v) => v,
                Err(m) => {
                    problems.push(format!("{origin}: {m}"));
                    continue;
                }
            };
            if !problems.is_empty() {
                continue;
            }
            let event = Event::OutcomeRecorded(OutcomeRecorded {
                participant: e.participant.clone(),
                timepoint: e.timepoint.clone(),
                collected_on: e.collected_on.to_string(), // ISO 8601, YYYY-MM-DD: validated to lie between randomisation and today
                values,
                window_reason: e.window_reason.as_deref().map(|r| r.trim().to_string()),
            });
            let (seq, entry_hash) = append(&tx, protocol, &mut state, &mut head, &event, user, now)?;
            if let Event::OutcomeRecorded(o) = event {
                let on = e.collected_on;
                subject.collected.entry(o.timepoint.clone()).and_modify(|d| *d = (*d).max(on)).or_insert(on);
                subject.current.entry(o.timepoint).or_default().extend(o.values);
            }
            out.push(Written { participant: e.participant.clone(), seq, entry_hash });
        }
        if !problems.is_empty() {
            return Err(batch_error(total, problems));
        }
        tx.commit()?;
        Ok(out)
    }

    /// Corrects one recorded value; the original stays in the log and the history.
    pub fn correct_outcome(&mut self, c: &Correction, user: &str, clock: impl Into<Clock>) -> Result<Written> {
        check_user(user)?;
        checked_reason(&c.reason)?;
        let protocol = &self.protocol;
        let tx = self.store.transaction()?;
        let mut head = tx.head()?;
        let now = clock.into().stamp(head.ts.as_deref())?;
        let subject = subject(&tx, &c.participant, protocol.timezone)?.map_err(Error::Input)?;
        let collected_on = tx
            .outcome(&c.participant, &c.timepoint, &c.field)?
            .map(|(_, on, _)| date_of(&on))
            .unwrap_or(subject.randomised_on);
        let (old, new) = followup::validate_correction(protocol, &subject, c, collected_on)
            .map_err(|m| Error::Input(format!("{m}; nothing was written")))?;
        let event = Event::OutcomeCorrected(OutcomeCorrected {
            participant: c.participant.clone(),
            timepoint: c.timepoint.clone(),
            field: c.field.clone(),
            old_value: old,
            new_value: new,
            reason: c.reason.trim().to_string(),
        });
        write_one(tx, protocol, &mut head, &event, user, now, &c.participant)
    }

    /// Records that a participant withdrew, was lost to follow-up, or died.
    /// They stay in their allocated arm for intention to treat.
    #[allow(clippy::too_many_arguments)]
    pub fn change_status(
        &mut self,
        participant: &str,
        kind: StatusKind,
        reason: &str,
        no_further_contact: bool,
        on: Option<NaiveDate>,
        user: &str,
        clock: impl Into<Clock>,
    ) -> Result<Written> {
        check_user(user)?;
        let reason = checked_reason(reason)?;
        if no_further_contact && kind != StatusKind::Withdrawn {
            return Err(Error::Input("--no-further-contact applies only to a withdrawal".into()));
        }
        let protocol = &self.protocol;
        let tx = self.store.transaction()?;
        let mut head = tx.head()?;
        let now = clock.into().stamp(head.ts.as_deref())?;
        let today = now.date_in(protocol.timezone);
        let subject = subject(&tx, participant, protocol.timezone)?.map_err(Error::Input)?;
        let on = on.unwrap_or(today);
        if on < subject.randomised_on || on > today {
            return Err(Error::Input(format!(
                "date {on} must be between randomisation ({}) and today ({today}); check --on",
                subject.randomised_on
            )));
        }
        if let Some(current) = tx.status_of(participant)?
            && current.status == "died"
        {
            return Err(Error::Refused(format!(
                "participant {participant} is recorded as died on {}; no further status change is possible",
                current.on_date
            )));
        }
        // No outcome is collected after a death: a death dated before a
        // collection already recorded contradicts it.
        if kind == StatusKind::Died
            && let Some((t, last)) = subject.collected.iter().max_by_key(|(_, d)| **d)
            && *last > on
        {
            return Err(Error::Input(format!(
                "participant {participant}: follow-up at {t} was collected on {last}, after the date of death {on}; \
                 check --on, or correct the follow-up record first"
            )));
        }
        let event = Event::StatusChanged(StatusChanged {
            participant: participant.to_string(),
            status: kind.as_str().to_string(),
            reason,
            no_further_contact,
            on: on.format("%Y-%m-%d").to_string(),
        });
        write_one(tx, protocol, &mut head, &event, user, now, participant)
    }

    /// Records that a participant who asked for no further contact consented
    /// to contact and data collection again: the only way the request is
    /// lifted (a later status change leaves it standing).
    pub fn renew_consent(
        &mut self,
        participant: &str,
        reason: &str,
        on: Option<NaiveDate>,
        user: &str,
        clock: impl Into<Clock>,
    ) -> Result<Written> {
        check_user(user)?;
        let reason = checked_reason(reason)?;
        let protocol = &self.protocol;
        let tx = self.store.transaction()?;
        let mut head = tx.head()?;
        let now = clock.into().stamp(head.ts.as_deref())?;
        let today = now.date_in(protocol.timezone);
        let subject = subject(&tx, participant, protocol.timezone)?.map_err(Error::Input)?;
        let status = tx.status_of(participant)?.filter(|s| s.no_further_contact).ok_or_else(|| {
            Error::Refused(format!(
                "participant {participant} has not asked for no further contact; there is no request to lift"
            ))
        })?;
        if status.status == "died" {
            return Err(Error::Refused(format!(
                "participant {participant} is recorded as died on {}; consent cannot be renewed",
                status.on_date
            )));
        }
        let on = on.unwrap_or(today);
        if on < date_of(&status.on_date).max(subject.randomised_on) || on > today {
            return Err(Error::Input(format!(
                "date {on} must be between the participant's last status change ({}) and today ({today}); check --on",
                status.on_date,
            )));
        }
        let event = Event::ConsentRenewed(ConsentRenewed {
            participant: participant.to_string(),
            reason,
            on: on.format("%Y-%m-%d").to_string(),
        });
        write_one(tx, protocol, &mut head, &event, user, now, participant)
    }
}
