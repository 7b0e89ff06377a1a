//! The follow-up reads on [`Trial`]: the due list, the outcome history and
//! window reasons (decoded from the log itself), the randomisations and
//! their dates.

use std::collections::BTreeMap;

use chrono::NaiveDate;

use super::{date_of, local_date_of};
use crate::error::{Error, Result};
use crate::event::{Event, Randomised};
use crate::followup::{self, Due};
use crate::ledger::Trial;
use crate::log::Entry;
use crate::store::HistoryRow;

impl Trial {
    /// The follow-ups due, in window or overdue on `on`, by window close date.
    pub fn due(&self, on: NaiveDate) -> Result<Vec<Due>> {
        let statuses: BTreeMap<String, (String, bool)> =
            self.store.statuses()?.into_iter().map(|s| (s.participant, (s.status, s.no_further_contact))).collect();
        let mut recorded: BTreeMap<String, Vec<String>> = BTreeMap::new();
        self.store.for_each_outcome_value(|participant, timepoint, _, value, _| {
            // A value corrected to missing does not make the timepoint done.
            if value.is_empty() {
                return;
            }
            let tps = recorded.entry(participant.to_string()).or_default();
            if !tps.iter().any(|t| t == timepoint) {
                tps.push(timepoint.to_string());
            }
        })?;
        let mut out = Vec::new();
        for p in self.store.participants()? {
            match statuses.get(&p.participant) {
                Some((s, _)) if s == "lost" || s == "died" => continue,
                Some((_, true)) => continue,
                _ => {}
            }
            let done = recorded.get(&p.participant).cloned().unwrap_or_default();
            let randomised_on = local_date_of(&p.randomised_at, self.protocol.timezone);
            out.extend(followup::due(&self.protocol, &p.participant, &p.site, randomised_on, &done, on));
        }
        out.sort_by(|a, b| (a.window_closes, &a.participant).cmp(&(b.window_closes, &b.participant)));
        Ok(out)
    }

    /// Every randomisation event, decoded, in order.
    pub fn randomisations(&self) -> Result<Vec<(u64, String, Randomised)>> {
        self.store
            .log_bodies("participant_randomised")?
            .into_iter()
            .map(|(seq, body)| {
                let entry = Entry::decode(&body)
                    .map_err(|m| Error::Integrity(format!("log entry {seq}: {m}; run `chancery verify`")))?;
                match Event::from_parts(&entry.kind, &entry.data) {
                    Ok(Event::ParticipantRandomised(r)) => Ok((seq, entry.ts, r)),
                    Ok(_) | Err(_) => {
                        Err(Error::Integrity(format!("log entry {seq} does not decode; run `chancery verify`")))
                    }
                }
            })
            .collect()
    }

    /// Every outcome change in log order: each recorded value, then each
    /// correction with its old value, who, when and why. Read from the log
    /// itself, the one authority, so it cannot disagree with it.
    pub fn history(&self) -> Result<Vec<HistoryRow>> {
        let mut bodies = self.store.log_bodies("outcome_recorded")?;
        bodies.extend(self.store.log_bodies("outcome_corrected")?);
        bodies.sort_by_key(|(seq, _)| *seq);
        let mut collected: BTreeMap<(String, String), String> = BTreeMap::new();
        let mut out = Vec::new();
        for (seq, body) in bodies {
            let bad = || Error::Integrity(format!("log entry {seq} does not decode; run `chancery verify`"));
            let entry = Entry::decode(&body).map_err(|_| bad())?;
            match Event::from_parts(&entry.kind, &entry.data).map_err(|_| bad())? {
                Event::OutcomeRecorded(o) => {
                    collected.insert((o.participant.clone(), o.timepoint.clone()), o.collected_on.clone());
                    let reason = o.window_reason.map(|r| format!("collected outside the window: {r}"));
                    for (field, value) in o.values {
                        out.push(HistoryRow {
                            seq,
                            participant: o.participant.clone(),
                            timepoint: o.timepoint.clone(),
                            field,
                            change: "recorded".into(),
                            old_value: None,
                            new_value: value,
                            collected_on: o.collected_on.clone(),
                            user: entry.user.clone(),
                            at: entry.ts.clone(),
                            reason: reason.clone(),
                        });
                    }
                }
                Event::OutcomeCorrected(c) => {
                    let collected_on =
                        collected.get(&(c.participant.clone(), c.timepoint.clone())).cloned().unwrap_or_default();
                    out.push(HistoryRow {
                        seq,
                        participant: c.participant,
                        timepoint: c.timepoint,
                        field: c.field,
                        change: "corrected".into(),
                        old_value: Some(c.old_value),
                        new_value: c.new_value,
                        collected_on,
                        user: entry.user.clone(),
                        at: entry.ts.clone(),
                        reason: Some(c.reason),
                    });
                }
                _ => return Err(bad()),
            }
        }
        Ok(out)
    }

    /// Why values were collected outside their timepoint's window, by
    /// (participant, timepoint, outcome), as the log's `outcome_recorded`
    /// entries record it (only entries that carry a reason are decoded).
    pub fn window_reasons(&self) -> Result<BTreeMap<(String, String, String), String>> {
        let mut out = BTreeMap::new();
        for (seq, body) in self.store.log_bodies_containing("outcome_recorded", "\"window_reason\"")? {
            let bad = || Error::Integrity(format!("log entry {seq} does not decode; run `chancery verify`"));
            let entry = Entry::decode(&body).map_err(|_| bad())?;
            let Event::OutcomeRecorded(o) = Event::from_parts(&entry.kind, &entry.data).map_err(|_| bad())? else {
                return Err(bad());
            };
            if let Some(reason) = o.window_reason {
                for field in o.values.into_keys() {
                    out.insert((o.participant.clone(), o.timepoint.clone(), field), reason.clone());
                }
            }
        }
        Ok(out)
    }

    /// Each randomised participant's date of randomisation.
    pub fn randomisation_dates(&self) -> Result<BTreeMap<String, NaiveDate>> {
        Ok(self.store.participants()?.into_iter().map(|p| (p.participant, date_of(&p.randomised_at))).collect())
    }

    /// The date of the log's last entry: the default "as of" date of exports and
    /// the analysis (everything recorded so far).
    pub fn last_entry_date(&self) -> Result<NaiveDate> {
        Ok(self.store.head()?.ts.as_deref().map_or(NaiveDate::MIN, |ts| local_date_of(ts, self.protocol.timezone)))
    }
}
