//! The systems of record the sub-agents talk to (reservations or bookings, accounts, bills,
//! tickets, flights, loyalty accounts), behind the `DataSource` trait so a real database or API
//! can replace the demo. `DemoData` is seeded from one app variant's section of
//! `config/demo_data.toml` (seed 000's worked examples and more), and can be told to fail
//! (`demo.reservation_system`) to exercise retries and the cached-data fallback.

use crate::config::SystemMode;
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SourceError {
    #[error("could not connect to {0}")]
    Unavailable(&'static str),
    #[error("{0}")]
    Rejected(String),
}

/// A hotel stay or a travel booking (then `check_in`/`check_out` are departure and arrival).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reservation {
    pub number: String,
    pub caller_id: String,
    pub guest_name: String,
    #[serde(default)]
    pub room_type: Option<String>,
    /// The booked flight (travel).
    #[serde(default)]
    pub flight: Option<String>,
    pub check_in: String,
    pub check_out: String,
    pub status: String,
    /// Cents.
    #[serde(with = "cents_str")]
    pub total: i64,
    #[serde(with = "cents_str")]
    pub cancellation_fee: i64,
    #[serde(default, with = "cents_str")]
    pub change_fee: i64,
}

impl crate::agent::resolve::Identified for Reservation {
    fn code(&self) -> &str {
        &self.number
    }
    fn holder(&self) -> &str {
        &self.guest_name
    }
    fn owned_by(&self, caller_id: &str) -> bool {
        self.caller_id == caller_id
    }
}

/// A flight on the demo's "today".
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Flight {
    pub number: String,
    pub origin: String,
    pub destination: String,
    pub departs: String,
    pub arrives: String,
    /// on_time | delayed | cancelled | boarding | landed
    pub status: String,
    #[serde(default)]
    pub delay_minutes: u32,
    pub gate: String,
}

/// A loyalty-programme member.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Member {
    pub caller_id: String,
    pub member_number: String,
    pub name: String,
    pub points: u64,
    pub tier: String,
}

impl Reservation {
    pub fn arrival(&self) -> Option<NaiveDate> {
        self.check_in
            .get(..10)
            .and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Account {
    pub id: String,
    pub caller_id: String,
    pub kind: String,
    pub last4: String,
    /// The billing postcode: the second factor a caller known only by their line gives.
    #[serde(default)]
    pub postcode: String,
}

impl Account {
    /// "Personal Account (ending in 4567)" — never the full number.
    pub fn label(&self) -> String {
        format!("{} Account (ending in {})", self.kind, self.last4)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BillItem {
    pub description: String,
    #[serde(with = "cents_str")]
    pub amount: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Bill {
    pub account_id: String,
    pub month: String,
    #[serde(with = "cents_str")]
    pub total: i64,
    pub currency: String,
    pub due_date: String,
    pub status: String,
    pub items: Vec<BillItem>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Cancellation {
    pub reservation: Reservation,
    pub fee: i64,
    pub refund: i64,
}

/// A write accepted while the system of record was unreachable, to be replayed later.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeferredWrite {
    pub kind: String,
    pub reference: String,
    pub at: String,
}

pub trait DataSource: Send + Sync {
    fn find_reservation(&self, number: &str) -> Result<Option<Reservation>, SourceError>;
    /// Reservations a caller may mean by these code readings (best first) and name: every one
    /// that could be near (the demo returns all; a real system would search by similarity).
    /// The agent decides which, if any, is meant (`agent::resolve`).
    fn reservation_candidates(
        &self,
        readings: &[String],
        name: Option<&str>,
    ) -> Result<Vec<Reservation>, SourceError>;
    fn reservations_of(&self, caller_id: &str) -> Result<Vec<Reservation>, SourceError>;
    fn cancel_reservation(&self, number: &str) -> Result<Cancellation, SourceError>;
    fn move_reservation(
        &self,
        number: &str,
        arrival: NaiveDate,
    ) -> Result<Reservation, SourceError>;
    fn accounts_of(&self, caller_id: &str) -> Result<Vec<Account>, SourceError>;
    fn bill(&self, account_id: &str, month: &str) -> Result<Option<Bill>, SourceError>;
    fn record_payment(&self, account_id: &str, cents: i64) -> Result<String, SourceError>;
    fn create_ticket(
        &self,
        caller_id: &str,
        severity: &str,
        description: &str,
    ) -> Result<String, SourceError>;
    fn request_service(&self, room: &str, service: &str) -> Result<u32, SourceError>;
    fn recommendations(&self) -> Result<Vec<String>, SourceError>;
    /// Today's flights (status board).
    fn flights(&self) -> Result<Vec<Flight>, SourceError>;
    fn member_of(&self, caller_id: &str) -> Result<Option<Member>, SourceError>;
    /// The customer a phone number (as the provider gives it) belongs to.
    fn customer_for_phone(&self, _phone: &str) -> Result<Option<String>, SourceError> {
        Ok(None)
    }
    fn member(&self, member_number: &str) -> Result<Option<Member>, SourceError>;
    /// Accept a write for later replay when the system of record is down (cached-data fallback).
    fn defer_write(&self, write: DeferredWrite) -> Result<(), SourceError>;
}

/// One app variant's systems of record.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct DemoFile {
    #[serde(default)]
    reservations: Vec<Reservation>,
    #[serde(default)]
    accounts: Vec<Account>,
    #[serde(default)]
    bills: Vec<Bill>,
    #[serde(default)]
    recommendations: Vec<String>,
    #[serde(default)]
    flights: Vec<Flight>,
    #[serde(default)]
    loyalty: Vec<Member>,
    /// Phone numbers (E.164) of the customers: who a call comes from.
    #[serde(default)]
    phones: std::collections::BTreeMap<String, String>,
}

/// The whole demo data file: its calendar and one section per app variant.
#[derive(Debug, Deserialize)]
struct DemoSections {
    #[serde(default)]
    today: Option<String>,
    #[serde(flatten)]
    variants: std::collections::BTreeMap<String, DemoFile>,
}

/// A phone number as `+` and digits ("+1 (555) 010-0789" → "+15550100789"); None for anything
/// that is not one (fewer than 7 digits, letters).
pub fn e164(s: &str) -> Option<String> {
    let s = s.trim();
    if s.chars().any(|c| c.is_alphabetic()) {
        return None;
    }
    let digits: String = s.chars().filter(char::is_ascii_digit).collect();
    (7..=15)
        .contains(&digits.len())
        .then(|| format!("+{digits}"))
}

/// In-memory demo systems of record.
pub struct DemoData {
    state: Mutex<DemoFileState>,
    mode: AtomicU8,
    seq: AtomicU64,
}

struct DemoFileState {
    file: DemoFile,
    deferred: Vec<DeferredWrite>,
}

impl DemoFileState {
    fn reservation_mut(&mut self, number: &str) -> Result<&mut Reservation, SourceError> {
        self.file
            .reservations
            .iter_mut()
            .find(|r| r.number == number)
            .ok_or_else(|| SourceError::Rejected(format!("no reservation {number}")))
    }
}

impl DemoData {
    /// The records of app variant `variant` (a `[variant]` section of the file; a variant
    /// without one has no records).
    pub fn from_toml(text: &str, variant: &str, mode: SystemMode) -> Result<DemoData, String> {
        let mut sections: DemoSections =
            toml::from_str(text).map_err(|e| format!("demo data is not valid: {e}"))?;
        if let Some(t) = &sections.today
            && NaiveDate::parse_from_str(t, "%Y-%m-%d").is_err()
        {
            return Err(format!("demo data: today {t:?} is not YYYY-MM-DD"));
        }
        let file = sections.variants.remove(variant).unwrap_or_default();
        let d = DemoData {
            state: Mutex::new(DemoFileState {
                file,
                deferred: vec![],
            }),
            mode: AtomicU8::new(0),
            seq: AtomicU64::new(1000),
        };
        d.set_reservation_system(mode);
        Ok(d)
    }

    /// Switch the reservation system's behaviour at run time (scenario files do this).
    pub fn set_reservation_system(&self, mode: SystemMode) {
        let v = match mode {
            SystemMode::Up => 0,
            SystemMode::Down => 1,
            SystemMode::FailWrites => 2,
        };
        self.mode.store(v, Ordering::SeqCst);
    }

    fn reservations_read(&self) -> Result<(), SourceError> {
        match self.mode.load(Ordering::SeqCst) {
            1 => Err(SourceError::Unavailable("the reservation system")),
            _ => Ok(()),
        }
    }

    fn reservations_write(&self) -> Result<(), SourceError> {
        match self.mode.load(Ordering::SeqCst) {
            0 => Ok(()),
            _ => Err(SourceError::Unavailable("the reservation system")),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, DemoFileState> {
        // A panic while holding this lock cannot leave the demo data half-written (every
        // mutation is a single assignment), so a poisoned lock is safe to reuse.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn deferred_writes(&self) -> Vec<DeferredWrite> {
        self.lock().deferred.clone()
    }

    fn next_id(&self, prefix: &str) -> String {
        format!("{prefix}{}", self.seq.fetch_add(1, Ordering::SeqCst))
    }
}

impl DataSource for DemoData {
    fn find_reservation(&self, number: &str) -> Result<Option<Reservation>, SourceError> {
        self.reservations_read()?;
        Ok(self
            .lock()
            .file
            .reservations
            .iter()
            .find(|r| r.number == number)
            .cloned())
    }

    fn reservation_candidates(
        &self,
        _readings: &[String],
        _name: Option<&str>,
    ) -> Result<Vec<Reservation>, SourceError> {
        self.reservations_read()?;
        Ok(self.lock().file.reservations.clone())
    }

    fn reservations_of(&self, caller_id: &str) -> Result<Vec<Reservation>, SourceError> {
        self.reservations_read()?;
        Ok(self
            .lock()
            .file
            .reservations
            .iter()
            .filter(|r| r.caller_id == caller_id)
            .cloned()
            .collect())
    }

    fn cancel_reservation(&self, number: &str) -> Result<Cancellation, SourceError> {
        self.reservations_write()?;
        let mut st = self.lock();
        let r = st.reservation_mut(number)?;
        r.status = "cancelled".into();
        Ok(Cancellation {
            reservation: r.clone(),
            fee: r.cancellation_fee,
            refund: r.total - r.cancellation_fee,
        })
    }

    fn move_reservation(
        &self,
        number: &str,
        arrival: NaiveDate,
    ) -> Result<Reservation, SourceError> {
        self.reservations_write()?;
        let mut st = self.lock();
        let r = st.reservation_mut(number)?;
        // The stay keeps its length: both ends move by the same number of days.
        let old = r
            .arrival()
            .ok_or_else(|| SourceError::Rejected("stored arrival date is not valid".into()))?;
        let delta = arrival - old;
        let shift = |ts: &str| {
            DateTime::parse_from_rfc3339(ts)
                .map(|dt| {
                    (dt.with_timezone(&Utc) + delta)
                        .format("%Y-%m-%dT%H:%M:%SZ")
                        .to_string()
                })
                .map_err(|_| SourceError::Rejected("stored dates are not valid".into()))
        };
        let (ci, co) = (shift(&r.check_in)?, shift(&r.check_out)?);
        r.check_in = ci;
        r.check_out = co;
        Ok(r.clone())
    }

    fn accounts_of(&self, caller_id: &str) -> Result<Vec<Account>, SourceError> {
        Ok(self
            .lock()
            .file
            .accounts
            .iter()
            .filter(|a| a.caller_id == caller_id)
            .cloned()
            .collect())
    }

    fn bill(&self, account_id: &str, month: &str) -> Result<Option<Bill>, SourceError> {
        Ok(self
            .lock()
            .file
            .bills
            .iter()
            .find(|b| b.account_id == account_id && b.month == month)
            .cloned())
    }

    fn record_payment(&self, account_id: &str, cents: i64) -> Result<String, SourceError> {
        if cents <= 0 {
            return Err(SourceError::Rejected("amount must be positive".into()));
        }
        if !self.lock().file.accounts.iter().any(|a| a.id == account_id) {
            return Err(SourceError::Rejected(format!("no account {account_id}")));
        }
        Ok(self.next_id("PAY"))
    }

    fn create_ticket(
        &self,
        _caller_id: &str,
        _severity: &str,
        _description: &str,
    ) -> Result<String, SourceError> {
        Ok(self.next_id("TCK"))
    }

    fn request_service(&self, _room: &str, _service: &str) -> Result<u32, SourceError> {
        Ok(20)
    }

    fn recommendations(&self) -> Result<Vec<String>, SourceError> {
        let recs = self.lock().file.recommendations.clone();
        Ok(if recs.is_empty() {
            vec![
                "the harbour seafood grill two blocks away".into(),
                "the old town walking tour at ten".into(),
                "the rooftop bar for sunset".into(),
            ]
        } else {
            recs
        })
    }

    fn flights(&self) -> Result<Vec<Flight>, SourceError> {
        Ok(self.lock().file.flights.clone())
    }

    fn customer_for_phone(&self, phone: &str) -> Result<Option<String>, SourceError> {
        let Some(number) = e164(phone) else {
            return Ok(None);
        };
        Ok(self
            .lock()
            .file
            .phones
            .iter()
            .find(|(p, _)| e164(p).as_deref() == Some(number.as_str()))
            .map(|(_, c)| c.clone()))
    }

    fn member_of(&self, caller_id: &str) -> Result<Option<Member>, SourceError> {
        Ok(self
            .lock()
            .file
            .loyalty
            .iter()
            .find(|m| m.caller_id == caller_id)
            .cloned())
    }

    fn member(&self, member_number: &str) -> Result<Option<Member>, SourceError> {
        Ok(self
            .lock()
            .file
            .loyalty
            .iter()
            .find(|m| m.member_number == member_number)
            .cloned())
    }

    fn defer_write(&self, write: DeferredWrite) -> Result<(), SourceError> {
        self.lock().deferred.push(write);
        Ok(())
    }
}

/// Money is written as "125.50" strings in the data file and kept as integer cents.
mod cents_str {
    use serde::{Deserialize, Deserializer, Serializer};
    pub fn serialize<S: Serializer>(c: &i64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(*c as f64 / 100.0)
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            S(String),
            F(f64),
        }
        let f = match Raw::deserialize(d)? {
            Raw::S(s) => s.parse::<f64>().map_err(serde::de::Error::custom)?,
            Raw::F(f) => f,
        };
        Ok((f * 100.0).round() as i64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn demo(mode: SystemMode) -> DemoData {
        DemoData::from_toml(
            &Config::embedded().unwrap().demo_data_text().unwrap(),
            "hospitality",
            mode,
        )
        .unwrap()
    }

    #[test]
    fn seed_examples_are_the_demo_data() {
        let d = demo(SystemMode::Up);
        let r = d.find_reservation("ABC123").unwrap().unwrap();
        assert_eq!(
            (r.guest_name.as_str(), r.room_type.as_deref()),
            ("John Doe", Some("Deluxe Suite"))
        );
        assert_eq!(r.arrival(), NaiveDate::from_ymd_opt(2025, 12, 1));
        let accts = d.accounts_of("user_789").unwrap();
        assert_eq!(
            accts.iter().map(|a| a.label()).collect::<Vec<_>>(),
            [
                "Personal Account (ending in 4567)",
                "Business Account (ending in 7890)"
            ]
        );
        let b = d.bill("acc_456", "2025-01").unwrap().unwrap();
        assert_eq!((b.total, b.due_date.as_str()), (12550, "2025-02-01"));
        assert_eq!(
            b.items.iter().map(|i| i.amount).collect::<Vec<_>>(),
            [9999, 2551]
        );
        let c = d.cancel_reservation("ABC123").unwrap();
        assert_eq!((c.fee, c.refund), (2500, 47500));
        // This month's bill exists on the demo's own calendar.
        assert!(d.bill("acc_456", "2025-11").unwrap().is_some());
    }

    #[test]
    fn each_variant_has_its_own_records() {
        let text = Config::embedded().unwrap().demo_data_text().unwrap();
        let travel = DemoData::from_toml(&text, "travel", SystemMode::Up).unwrap();
        assert!(travel.find_reservation("ABC123").unwrap().is_none());
        let b = travel.find_reservation("JKT482").unwrap().unwrap();
        assert_eq!(b.flight.as_deref(), Some("BA117"));
        assert!(
            travel
                .flights()
                .unwrap()
                .iter()
                .any(|f| f.number == "UA456")
        );
        assert_eq!(
            travel.member_of("user_789").unwrap().map(|m| m.points),
            Some(42_350)
        );
        let hotel = DemoData::from_toml(&text, "hospitality", SystemMode::Up).unwrap();
        assert!(hotel.find_reservation("JKT482").unwrap().is_none());
        assert!(hotel.flights().unwrap().is_empty());
    }

    #[test]
    fn failure_modes() {
        let d = demo(SystemMode::FailWrites);
        assert!(d.find_reservation("ABC123").unwrap().is_some());
        assert_eq!(
            d.cancel_reservation("ABC123"),
            Err(SourceError::Unavailable("the reservation system"))
        );
        d.set_reservation_system(SystemMode::Down);
        assert!(d.find_reservation("ABC123").is_err());
        d.set_reservation_system(SystemMode::Up);
        let moved = d
            .move_reservation("ABC123", NaiveDate::from_ymd_opt(2025, 12, 8).unwrap())
            .unwrap();
        assert_eq!(moved.check_in, "2025-12-08T15:00:00Z");
        assert_eq!(moved.check_out, "2025-12-12T11:00:00Z");
    }
}
