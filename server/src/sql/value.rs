//! Values crossing the contract: SQLite's five storage classes, which PostgreSQL's types are
//! read into and written from (a flag is an integer 0/1 on both; a `BIGINT` is `i64`).

use std::error::Error as StdError;

use bytes::BytesMut;
use tokio_postgres::types::{FromSql, IsNull, Kind, ToSql, Type};

/// A parameter's value, borrowed from the Rust value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value<'a> {
    Null,
    Integer(i64),
    Real(f64),
    Text(&'a str),
    Blob(&'a [u8]),
}

/// A column's value, borrowed from the row.
pub type ValueRef<'a> = Value<'a>;

impl<'a> From<rusqlite::types::ValueRef<'a>> for Value<'a> {
    fn from(v: rusqlite::types::ValueRef<'a>) -> Self {
        use rusqlite::types::ValueRef as V;
        match v {
            V::Null => Value::Null,
            V::Integer(i) => Value::Integer(i),
            V::Real(f) => Value::Real(f),
            // SQLite text is UTF-8 unless a client wrote otherwise; such text reads as a blob.
            V::Text(t) => std::str::from_utf8(t).map(Value::Text).unwrap_or(Value::Blob(t)),
            V::Blob(b) => Value::Blob(b),
        }
    }
}

impl Value<'_> {
    fn kind(&self) -> &'static str {
        match self {
            Value::Null => "NULL",
            Value::Integer(_) => "integer",
            Value::Real(_) => "real",
            Value::Text(_) => "text",
            Value::Blob(_) => "blob",
        }
    }
}

/// A Rust value that can be a parameter.
pub trait ToValue {
    fn to_value(&self) -> Value<'_>;
}

macro_rules! int_to_value {
    ($($t:ty)*) => {$(
        impl ToValue for $t {
            fn to_value(&self) -> Value<'_> {
                Value::Integer(*self as i64)
            }
        }
    )*};
}
int_to_value!(i8 i16 i32 i64 u8 u16 u32 isize);

/// Past `i64::MAX` a `u64` or `usize` is stored as the largest integer: every count and
/// position here is far below it, and the input checks refuse larger ones before this.
impl ToValue for u64 {
    fn to_value(&self) -> Value<'_> {
        Value::Integer(i64::try_from(*self).unwrap_or(i64::MAX))
    }
}

impl ToValue for usize {
    fn to_value(&self) -> Value<'_> {
        Value::Integer(i64::try_from(*self).unwrap_or(i64::MAX))
    }
}

impl ToValue for bool {
    fn to_value(&self) -> Value<'_> {
        Value::Integer(i64::from(*self))
    }
}

impl ToValue for f64 {
    fn to_value(&self) -> Value<'_> {
        Value::Real(*self)
    }
}

impl ToValue for str {
    fn to_value(&self) -> Value<'_> {
        Value::Text(self)
    }
}

impl ToValue for String {
    fn to_value(&self) -> Value<'_> {
        Value::Text(self)
    }
}

impl ToValue for [u8] {
    fn to_value(&self) -> Value<'_> {
        Value::Blob(self)
    }
}

impl ToValue for Vec<u8> {
    fn to_value(&self) -> Value<'_> {
        Value::Blob(self)
    }
}

impl<const N: usize> ToValue for [u8; N] {
    fn to_value(&self) -> Value<'_> {
        Value::Blob(self)
    }
}

impl<T: ToValue> ToValue for Option<T> {
    fn to_value(&self) -> Value<'_> {
        match self {
            Some(v) => v.to_value(),
            None => Value::Null,
        }
    }
}

impl<T: ToValue + ?Sized> ToValue for &T {
    fn to_value(&self) -> Value<'_> {
        (**self).to_value()
    }
}

impl<T: ToValue + ?Sized> ToValue for Box<T> {
    fn to_value(&self) -> Value<'_> {
        (**self).to_value()
    }
}

impl ToValue for Value<'_> {
    fn to_value(&self) -> Value<'_> {
        *self
    }
}

/// Any column's value, owned: what a copy between engines carries (`ohassist migrate`).
#[derive(Debug, Clone, PartialEq)]
pub enum OwnedValue {
    Null,
    Integer(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

impl ToValue for OwnedValue {
    fn to_value(&self) -> Value<'_> {
        match self {
            OwnedValue::Null => Value::Null,
            OwnedValue::Integer(i) => Value::Integer(*i),
            OwnedValue::Real(f) => Value::Real(*f),
            OwnedValue::Text(t) => Value::Text(t),
            OwnedValue::Blob(b) => Value::Blob(b),
        }
    }
}

impl From<Value<'_>> for OwnedValue {
    fn from(v: Value<'_>) -> Self {
        match v {
            Value::Null => OwnedValue::Null,
            Value::Integer(i) => OwnedValue::Integer(i),
            Value::Real(f) => OwnedValue::Real(f),
            Value::Text(t) => OwnedValue::Text(t.to_string()),
            Value::Blob(b) => OwnedValue::Blob(b.to_vec()),
        }
    }
}

impl FromValue for OwnedValue {
    fn from_value(v: ValueRef<'_>) -> Result<Self, &'static str> {
        Ok(OwnedValue::from(v))
    }
}

/// A Rust value a column can be read as. The error is the kind of value found.
pub trait FromValue: Sized {
    fn from_value(v: ValueRef<'_>) -> Result<Self, &'static str>;
}

macro_rules! int_from_value {
    ($($t:ty)*) => {$(
        impl FromValue for $t {
            fn from_value(v: ValueRef<'_>) -> Result<Self, &'static str> {
                match v {
                    Value::Integer(i) => <$t>::try_from(i).map_err(|_| "out-of-range integer"),
                    other => Err(other.kind()),
                }
            }
        }
    )*};
}
int_from_value!(i8 i16 i32 i64 u8 u16 u32 u64 usize isize);

impl FromValue for bool {
    fn from_value(v: ValueRef<'_>) -> Result<Self, &'static str> {
        match v {
            Value::Integer(i) => Ok(i != 0),
            other => Err(other.kind()),
        }
    }
}

impl FromValue for f64 {
    fn from_value(v: ValueRef<'_>) -> Result<Self, &'static str> {
        match v {
            Value::Real(f) => Ok(f),
            Value::Integer(i) => Ok(i as f64),
            other => Err(other.kind()),
        }
    }
}

impl FromValue for String {
    fn from_value(v: ValueRef<'_>) -> Result<Self, &'static str> {
        match v {
            Value::Text(t) => Ok(t.to_string()),
            other => Err(other.kind()),
        }
    }
}

impl FromValue for Vec<u8> {
    fn from_value(v: ValueRef<'_>) -> Result<Self, &'static str> {
        match v {
            Value::Blob(b) => Ok(b.to_vec()),
            other => Err(other.kind()),
        }
    }
}

impl<T: FromValue> FromValue for Option<T> {
    fn from_value(v: ValueRef<'_>) -> Result<Self, &'static str> {
        match v {
            Value::Null => Ok(None),
            v => T::from_value(v).map(Some),
        }
    }
}

/// A parameter as rusqlite takes it.
pub(super) struct SqliteParam<'a>(pub &'a dyn ToValue);

impl rusqlite::ToSql for SqliteParam<'_> {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, ValueRef as V};
        Ok(ToSqlOutput::Borrowed(match self.0.to_value() {
            Value::Null => V::Null,
            Value::Integer(i) => V::Integer(i),
            Value::Real(f) => V::Real(f),
            Value::Text(t) => V::Text(t.as_bytes()),
            Value::Blob(b) => V::Blob(b),
        }))
    }
}

/// A parameter as tokio-postgres takes it: written as whatever type PostgreSQL inferred
/// for its place (an integer into `BIGINT`, `INTEGER`, `BOOLEAN` or text alike).
pub(super) struct PgParam<'a>(pub &'a dyn ToValue);

impl std::fmt::Debug for PgParam<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.0.to_value())
    }
}

type BoxError = Box<dyn StdError + Sync + Send>;

fn is_text(ty: &Type) -> bool {
    matches!(*ty, Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN) || ty.name() == "citext"
}

impl ToSql for PgParam<'_> {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
        let wrong = |v: Value<'_>| -> BoxError { format!("a {} parameter where {} is expected", v.kind(), ty).into() };
        match self.0.to_value() {
            Value::Null => Ok(IsNull::Yes),
            Value::Integer(i) => match *ty {
                Type::INT8 => i.to_sql(ty, out),
                Type::INT4 => i32::try_from(i)?.to_sql(ty, out),
                Type::INT2 => i16::try_from(i)?.to_sql(ty, out),
                Type::BOOL => (i != 0).to_sql(ty, out),
                Type::FLOAT8 => (i as f64).to_sql(ty, out),
                Type::FLOAT4 => (i as f32).to_sql(ty, out),
                _ if is_text(ty) => i.to_string().as_str().to_sql(&Type::TEXT, out),
                _ => Err(wrong(Value::Integer(i))),
            },
            Value::Real(f) => match *ty {
                Type::FLOAT8 => f.to_sql(ty, out),
                Type::FLOAT4 => (f as f32).to_sql(ty, out),
                _ => Err(wrong(Value::Real(f))),
            },
            Value::Text(t) if is_text(ty) => {
                out.extend_from_slice(t.as_bytes());
                Ok(IsNull::No)
            }
            Value::Blob(b) if *ty == Type::BYTEA => {
                out.extend_from_slice(b);
                Ok(IsNull::No)
            }
            v => Err(wrong(v)),
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    tokio_postgres::types::to_sql_checked!();
}

/// A PostgreSQL column as it came, any type, read into a [`Value`] by [`PgRaw::value`].
pub(super) struct PgRaw<'a> {
    ty: Type,
    raw: Option<&'a [u8]>,
}

impl<'a> FromSql<'a> for PgRaw<'a> {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<Self, BoxError> {
        Ok(PgRaw { ty: ty.clone(), raw: Some(raw) })
    }

    fn from_sql_null(ty: &Type) -> Result<Self, BoxError> {
        Ok(PgRaw { ty: ty.clone(), raw: None })
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}

impl<'a> PgRaw<'a> {
    pub fn value(&self) -> Result<Value<'a>, BoxError> {
        let Some(raw) = self.raw else { return Ok(Value::Null) };
        let ty = &self.ty;
        Ok(match *ty {
            Type::INT8 => Value::Integer(i64::from_sql(ty, raw)?),
            Type::INT4 => Value::Integer(i32::from_sql(ty, raw)?.into()),
            Type::INT2 => Value::Integer(i16::from_sql(ty, raw)?.into()),
            Type::OID => Value::Integer(u32::from_sql(ty, raw)?.into()),
            Type::BOOL => Value::Integer(bool::from_sql(ty, raw)?.into()),
            Type::FLOAT8 => Value::Real(f64::from_sql(ty, raw)?),
            Type::FLOAT4 => Value::Real(f32::from_sql(ty, raw)?.into()),
            Type::NUMERIC => numeric(raw)?,
            Type::BYTEA => Value::Blob(raw),
            _ if is_text(ty) || matches!(ty.kind(), Kind::Domain(_)) => Value::Text(std::str::from_utf8(raw)?),
            _ => return Err(format!("a column of type {ty}, which no query here reads").into()),
        })
    }
}

/// PostgreSQL's binary NUMERIC (what `sum()` of a `BIGINT` is): an integer when it has no
/// fraction, a real otherwise. Base-10000 digits, big-endian, after a header of four i16s.
fn numeric(raw: &[u8]) -> Result<Value<'static>, BoxError> {
    let word = |i: usize| -> Result<i16, BoxError> {
        let b = raw.get(i * 2..i * 2 + 2).ok_or("a truncated NUMERIC")?;
        Ok(i16::from_be_bytes([b[0], b[1]]))
    };
    let (ndigits, weight, sign, dscale) = (word(0)? as usize, word(1)?, word(2)? as u16, word(3)?);
    if sign == 0xC000 {
        return Err("a NaN NUMERIC".into());
    }
    let mut value = 0f64;
    let mut int: Option<i128> = Some(0);
    for d in 0..ndigits {
        let digit = word(4 + d)? as i128;
        let power = weight as i32 - d as i32;
        value += digit as f64 * 10000f64.powi(power);
        int = match (int, power) {
            (Some(n), p) if p >= 0 => {
                10000i128.checked_pow(p as u32).and_then(|m| digit.checked_mul(m)).and_then(|d| n.checked_add(d))
            }
            (Some(n), _) if digit == 0 => Some(n),
            _ => None,
        };
    }
    let negative = sign == 0x4000;
    match int.and_then(|n| i64::try_from(n).ok()) {
        Some(n) if dscale >= 0 => Ok(Value::Integer(if negative { -n } else { n })),
        _ => Ok(Value::Real(if negative { -value } else { value })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numeric_bytes(ndigits: i16, weight: i16, sign: u16, dscale: i16, digits: &[i16]) -> Vec<u8> {
        let mut v = Vec::new();
        for w in [ndigits, weight, sign as i16, dscale].into_iter().chain(digits.iter().copied()) {
            v.extend_from_slice(&w.to_be_bytes());
        }
        v
    }

    #[test]
    fn numeric_sums_read_as_integers_or_reals() {
        // 123456789 = 1|2345|6789 in base 10000, weight 2.
        assert_eq!(numeric(&numeric_bytes(3, 2, 0, 0, &[1, 2345, 6789])).unwrap(), Value::Integer(123_456_789));
        assert_eq!(numeric(&numeric_bytes(1, 1, 0x4000, 0, &[7])).unwrap(), Value::Integer(-70_000));
        assert_eq!(numeric(&numeric_bytes(0, 0, 0, 0, &[])).unwrap(), Value::Integer(0));
        assert_eq!(numeric(&numeric_bytes(2, 0, 0, 1, &[3, 5000])).unwrap(), Value::Real(3.5));
        assert!(numeric(&numeric_bytes(0, 0, 0xC000, 0, &[])).is_err());
        assert!(numeric(&[0, 3, 0]).is_err(), "truncated");
    }

    #[test]
    fn flags_and_counts_read_back_as_the_types_asked() {
        assert!(bool::from_value(Value::Integer(1)).unwrap());
        assert_eq!(u32::from_value(Value::Integer(-1)), Err("out-of-range integer"));
        assert_eq!(String::from_value(Value::Integer(1)), Err("integer"));
        assert_eq!(Option::<i64>::from_value(Value::Null), Ok(None));
        assert_eq!(f64::from_value(Value::Integer(2)), Ok(2.0));
    }
}
