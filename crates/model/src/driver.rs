//! Value drivers: why a client works with us, and how strongly.

use std::borrow::Cow;

use crate::error::ModelError;

/// The nine reasons clients usually give for working with a rep.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum UsualDriver {
    Relationship,
    CustomerService,
    Delivery,
    ItSupport,
    Training,
    BranchProximity,
    Products,
    Price,
    Programs,
}

impl UsualDriver {
    /// All nine, in the order the app shows them.
    pub const ALL: [UsualDriver; 9] = [
        UsualDriver::Relationship,
        UsualDriver::CustomerService,
        UsualDriver::Delivery,
        UsualDriver::ItSupport,
        UsualDriver::Training,
        UsualDriver::BranchProximity,
        UsualDriver::Products,
        UsualDriver::Price,
        UsualDriver::Programs,
    ];

    /// The key under which the driver is stored in an account's `drivers` map.
    pub fn key_str(self) -> &'static str {
        match self {
            UsualDriver::Relationship => "relationship",
            UsualDriver::CustomerService => "customer_service",
            UsualDriver::Delivery => "delivery",
            UsualDriver::ItSupport => "it_support",
            UsualDriver::Training => "training",
            UsualDriver::BranchProximity => "branch_proximity",
            UsualDriver::Products => "products",
            UsualDriver::Price => "price",
            UsualDriver::Programs => "programs",
        }
    }

    /// The name shown to people.
    pub fn label(self) -> &'static str {
        match self {
            UsualDriver::Relationship => "Relationship",
            UsualDriver::CustomerService => "Customer service",
            UsualDriver::Delivery => "Delivery",
            UsualDriver::ItSupport => "IT support",
            UsualDriver::Training => "Training",
            UsualDriver::BranchProximity => "Branch proximity",
            UsualDriver::Products => "Products",
            UsualDriver::Price => "Price",
            UsualDriver::Programs => "Programs",
        }
    }

    /// The usual driver stored under `key`, if any.
    pub fn from_key(key: &str) -> Option<UsualDriver> {
        UsualDriver::ALL.into_iter().find(|d| d.key_str() == key)
    }
}

const CUSTOM_PREFIX: &str = "custom:";

/// The key of a driver: a usual driver's key (`relationship`, `it_support`, …) or
/// `custom:<slug>` for a rep's own driver. Two reps who type the same custom name get the same
/// key, so their records land in the same place.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DriverKey(String);

impl DriverKey {
    /// The key of a usual driver.
    pub fn usual(driver: UsualDriver) -> DriverKey {
        DriverKey(driver.key_str().to_string())
    }

    /// The key of a rep's own driver named `name` ("After-hours pickup" becomes
    /// `custom:after-hours-pickup`). Returns an error if the name has no letter or digit.
    pub fn custom(name: &str) -> Result<DriverKey, ModelError> {
        let mut slug = String::with_capacity(name.len());
        for word in name
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
        {
            if !slug.is_empty() {
                slug.push('-');
            }
            slug.extend(word.chars().flat_map(char::to_lowercase));
        }
        if slug.is_empty() {
            return Err(ModelError::InvalidDriverKey(name.to_string()));
        }
        Ok(DriverKey(format!("{CUSTOM_PREFIX}{slug}")))
    }

    /// Parses a stored key, refusing anything that is neither usual nor `custom:<slug>`.
    pub fn parse(key: &str) -> Result<DriverKey, ModelError> {
        if UsualDriver::from_key(key).is_some() {
            return Ok(DriverKey(key.to_string()));
        }
        match key.strip_prefix(CUSTOM_PREFIX) {
            Some(slug) if !slug.is_empty() => DriverKey::custom(slug)
                .ok()
                .filter(|k| k.0 == key)
                .ok_or_else(|| ModelError::InvalidDriverKey(key.to_string())),
            _ => Err(ModelError::InvalidDriverKey(key.to_string())),
        }
    }

    /// The usual driver this key names, or `None` for a custom driver (or one from a newer
    /// version of the app).
    pub fn usual_driver(&self) -> Option<UsualDriver> {
        UsualDriver::from_key(&self.0)
    }

    /// Whether this is a rep's own driver.
    pub fn is_custom(&self) -> bool {
        self.0.starts_with(CUSTOM_PREFIX)
    }

    /// The name shown to people: the usual label, or the custom slug made readable.
    pub fn label(&self) -> Cow<'_, str> {
        if let Some(usual) = self.usual_driver() {
            return Cow::Borrowed(usual.label());
        }
        let slug = self.0.strip_prefix(CUSTOM_PREFIX).unwrap_or(&self.0);
        let mut label = String::with_capacity(slug.len());
        for (i, c) in slug.chars().enumerate() {
            match c {
                '-' => label.push(' '),
                c if i == 0 => label.extend(c.to_uppercase()),
                c => label.push(c),
            }
        }
        Cow::Owned(label)
    }

    /// The key as stored.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<UsualDriver> for DriverKey {
    fn from(driver: UsualDriver) -> Self {
        DriverKey::usual(driver)
    }
}

/// Hydrating keeps any key, even one this version does not know, so a driver recorded by a
/// newer app still shows (by its raw key) and is never dropped.
impl From<String> for DriverKey {
    fn from(key: String) -> Self {
        DriverKey(key)
    }
}

impl AsRef<str> for DriverKey {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for DriverKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// How strongly a driver matters to the client, on a 1-to-5 scale:
/// 1 minor, 2 some, 3 matters, 4 strong, 5 decisive (the main reason they stay).
///
/// Stored as an unsigned integer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Strength(u8);

impl Strength {
    pub const MINOR: Strength = Strength(1);
    pub const SOME: Strength = Strength(2);
    pub const MATTERS: Strength = Strength(3);
    pub const STRONG: Strength = Strength(4);
    pub const DECISIVE: Strength = Strength(5);

    /// A strength from 1 to 5.
    pub fn new(value: i64) -> Result<Strength, ModelError> {
        match u8::try_from(value) {
            Ok(v @ 1..=5) => Ok(Strength(v)),
            _ => Err(ModelError::StrengthOutOfRange(value)),
        }
    }

    /// The number from 1 to 5.
    pub fn value(self) -> u8 {
        self.0
    }

    /// The word shown to people.
    pub fn label(self) -> &'static str {
        match self.0 {
            1 => "minor",
            2 => "some",
            3 => "matters",
            4 => "strong",
            _ => "decisive",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn custom_keys_are_slugs() {
        let key = DriverKey::custom("  After-hours PICKUP! ").unwrap();
        assert_eq!(key.as_str(), "custom:after-hours-pickup");
        assert_eq!(key.label(), "After hours pickup");
        assert!(key.is_custom());
        assert_eq!(key.usual_driver(), None);
        assert!(DriverKey::custom(" -- ").is_err());
    }

    #[test]
    fn parse_accepts_only_known_shapes() {
        assert_eq!(
            DriverKey::parse("it_support").unwrap(),
            DriverKey::usual(UsualDriver::ItSupport)
        );
        assert!(DriverKey::parse("custom:late-deliveries").is_ok());
        assert!(DriverKey::parse("custom:Late Deliveries").is_err());
        assert!(DriverKey::parse("custom:").is_err());
        assert!(DriverKey::parse("weather").is_err());
    }

    #[test]
    fn every_usual_driver_round_trips_its_key() {
        for driver in UsualDriver::ALL {
            assert_eq!(UsualDriver::from_key(driver.key_str()), Some(driver));
        }
    }

    #[test]
    fn strength_is_one_to_five() {
        assert!(Strength::new(0).is_err());
        assert!(Strength::new(6).is_err());
        assert!(Strength::new(-1).is_err());
        assert_eq!(Strength::new(5).unwrap(), Strength::DECISIVE);
        assert_eq!(Strength::new(1).unwrap().label(), "minor");
    }
}
