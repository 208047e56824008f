//! Optional GeoIP country lookup from a MaxMind database (GeoLite2/GeoIP2 Country or City).
//! Without a configured database every lookup answers "".

use std::net::IpAddr;
use std::path::Path;

/// Why the GeoIP database could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum GeoError {
    #[error("cannot open geoip database {path}")]
    Open {
        path: String,
        #[source]
        source: maxminddb::MaxMindDbError,
    },
}

/// Country lookups; a no-op when no database is configured.
#[derive(Debug, Default)]
pub struct Geo {
    reader: Option<maxminddb::Reader<Vec<u8>>>,
}

impl Geo {
    /// Loads the database into memory (once, at start-up) when a path is given.
    pub fn open(path: Option<&Path>) -> Result<Self, GeoError> {
        let Some(path) = path else {
            return Ok(Self::default());
        };
        let reader = maxminddb::Reader::open_readfile(path).map_err(|source| GeoError::Open {
            path: path.display().to_string(),
            source,
        })?;
        Ok(Self {
            reader: Some(reader),
        })
    }

    /// ISO 3166-1 alpha-2 country of an IP, "" when unknown, not an IP (hashed by the project's
    /// privacy setting) or without a database. `ip` is the column's text as bytes.
    pub fn country(&self, ip: &[u8]) -> String {
        let Some(reader) = &self.reader else {
            return String::new();
        };
        let Some(ip) = std::str::from_utf8(ip)
            .ok()
            .and_then(|ip| ip.trim().parse::<IpAddr>().ok())
        else {
            return String::new();
        };
        let Ok(found) = reader.lookup(ip) else {
            return String::new();
        };
        let path = [
            maxminddb::PathElement::Key("country"),
            maxminddb::PathElement::Key("iso_code"),
        ];
        found
            .decode_path::<String>(&path)
            .ok()
            .flatten()
            .unwrap_or_default()
    }

    pub fn is_configured(&self) -> bool {
        self.reader.is_some()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn without_a_database_every_country_is_empty() {
        let geo = Geo::open(None).unwrap();
        assert!(!geo.is_configured());
        assert_eq!(geo.country(b"8.8.8.8"), "");
        assert_eq!(geo.country(b"not-an-ip"), "");
    }

    #[test]
    fn a_file_that_is_not_a_database_is_an_error() {
        let dir = std::env::temp_dir().join(format!("palisade-geo-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let bogus = dir.join("bogus.mmdb");
        std::fs::write(&bogus, b"definitely not maxmind").unwrap();
        let err = Geo::open(Some(&bogus)).unwrap_err();
        assert!(err.to_string().contains("bogus.mmdb"));
        let missing = Geo::open(Some(&dir.join("missing.mmdb")));
        assert!(missing.is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
