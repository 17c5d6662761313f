//! Reading an [`Event`] in one pass over the payload: each field the event
//! names is typed as it is met, everything else is checked and stepped over.
//! The first problem in document order is the one reported, as serde would:
//! wrong types, missing, duplicate or (in `consent`) unknown fields are
//! `schema`; anything a JSON parser rejects is `malformed_json`.

use std::borrow::Cow;

use super::json::{finite, skip};
use super::lex::{Lexer, Peek};
use super::{Consent, DeadReason, Event, Rejection, Span};

fn schema(detail: impl Into<String>) -> Rejection {
    Rejection::new(DeadReason::Schema, detail)
}

/// The JSON type a peek announces, for "expected X, found Y" details.
fn kind(peek: Peek) -> &'static str {
    match peek {
        Peek::Object => "an object",
        Peek::Array => "an array",
        Peek::String => "a string",
        Peek::Null => "null",
        Peek::True | Peek::False => "a boolean",
        Peek::Number => "a number",
    }
}

/// The keys of one object, each at most once: a bit per known field.
#[derive(Debug, Default)]
struct Seen(u16);

impl Seen {
    fn first<F: Copy + Into<&'static str>>(&mut self, field: F, bit: u8) -> Result<(), Rejection> {
        let mask = 1 << bit;
        if self.0 & mask != 0 {
            return Err(schema(format!("duplicate field `{}`", field.into())));
        }
        self.0 |= mask;
        Ok(())
    }

    fn has(&self, bit: u8) -> bool {
        self.0 & (1 << bit) != 0
    }
}

/// Walks the members of the object whose `{` is next: `classify` names each
/// key, and `member` reads the value.
///
/// A storefront's serializer writes every event's fields in the same order,
/// and `F` declares them in that order. So each key is first compared with
/// the bytes of the one expected next, `"name":`, which saves scanning the
/// key and looking it up; any other key, or one with spaces or escapes, is
/// read in full, and the expectation moves on from the key found.
fn members<'a, F, K>(
    j: &mut Lexer<'a>,
    known: impl Fn(F) -> K,
    classify: impl Fn(&str) -> K,
    mut member: impl FnMut(&mut Lexer<'a>, K) -> Result<(), Rejection>,
) -> Result<(), Rejection>
where
    F: Copy + strum::VariantArray + Into<&'static str>,
    K: PartialEq,
{
    let order = F::VARIANTS;
    let mut next = 0;
    let expected = |next: usize| order.get(next).map(|&f| (f, f.into()));
    let mut key = match expected(next) {
        Some((f, name)) if j.object_first_is(name) => Some(known(f)),
        _ => j.object_first()?.map(|k| classify(&k)),
    };
    while let Some(k) = key {
        next = match expected(next) {
            Some((f, _)) if known(f) == k => next + 1,
            _ => order
                .iter()
                .position(|&f| known(f) == k)
                .map_or(next, |at| at + 1),
        };
        member(j, k)?;
        key = match expected(next) {
            Some((f, name)) if j.object_next_is(name) => Some(known(f)),
            _ => j.object_next()?.map(|k| classify(&k)),
        };
    }
    Ok(())
}

/// The top-level fields, in the order storefronts write them.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, strum::EnumString, strum::IntoStaticStr, strum::VariantArray,
)]
#[strum(serialize_all = "camelCase")]
enum Field {
    Id,
    Name,
    Timestamp,
    ShopId,
    ClientId,
    Region,
    Consent,
    Context,
    Customer,
    Data,
}

const REQUIRED: [Field; 6] = [
    Field::Id,
    Field::Name,
    Field::Timestamp,
    Field::ShopId,
    Field::ClientId,
    Field::Consent,
];

/// The event in `text`, which it keeps; `text` back with the rejection when
/// it is not one.
pub(super) fn event(text: String) -> Result<Event, (Rejection, String)> {
    match fields(&text) {
        Ok(mut e) => {
            e.text = text;
            Ok(e)
        }
        Err(rejection) => Err((rejection, text)),
    }
}

/// The event's fields, its text left empty.
fn fields(text: &str) -> Result<Event, Rejection> {
    let mut j = Lexer::new(text);
    let peek = j.peek()?;
    if peek != Peek::Object {
        // Check the whole value first: a JSON error outranks the wrong type.
        skip(&mut j, 0)?;
        return Err(schema(format!(
            "an event is an object, found {}",
            kind(peek)
        )));
    }
    let empty = Span::EMPTY;
    let mut e = Event {
        text: String::new(),
        decoded: String::new(),
        id: empty,
        name: empty,
        timestamp: empty,
        shop_id: 0,
        client_id: empty,
        region: None,
        consent: Consent::default(),
        url: None,
        referrer: None,
        user_agent: None,
        email: None,
        phone: None,
        data: None,
    };
    let mut seen = Seen::default();
    members(
        &mut j,
        Some,
        |k| k.parse::<Field>().ok(),
        |j, field| {
            let Some(field) = field else {
                return skip(j, 1);
            };
            seen.first(field, field as u8)?;
            let name: &'static str = field.into();
            let decoded = &mut e.decoded;
            match field {
                Field::Id => e.id = string(j, name, decoded)?,
                Field::Name => e.name = string(j, name, decoded)?,
                Field::Timestamp => e.timestamp = string(j, name, decoded)?,
                Field::ShopId => e.shop_id = unsigned(j, name)?,
                Field::ClientId => e.client_id = string(j, name, decoded)?,
                Field::Region => e.region = optional_string(j, name, decoded)?,
                Field::Consent => e.consent = consent(j)?,
                Field::Context => context(j, &mut e)?,
                Field::Customer => customer(j, &mut e)?,
                Field::Data => e.data = data(j)?,
            }
            Ok(())
        },
    )?;
    if let Some(missing) = REQUIRED.iter().find(|f| !seen.has(**f as u8)) {
        let name: &'static str = (*missing).into();
        return Err(schema(format!("missing field `{name}`")));
    }
    j.finish()?;
    Ok(e)
}

/// The string whose `"` is next, kept: where it is in the payload, or, if
/// it has escapes, where its decoded text landed in `decoded`.
fn keep(j: &mut Lexer, decoded: &mut String) -> Result<Span, Rejection> {
    Ok(match j.string()? {
        // Without escapes, the string ends right before its closing quote.
        Cow::Borrowed(s) => {
            let end = j.index() - 1;
            Span::new(end - s.len(), end, false)
        }
        Cow::Owned(s) => {
            let start = decoded.len();
            decoded.push_str(&s);
            Span::new(start, decoded.len(), true)
        }
    })
}

fn string(j: &mut Lexer, field: &str, decoded: &mut String) -> Result<Span, Rejection> {
    match j.peek()? {
        Peek::String => keep(j, decoded),
        other => Err(wrong_type(j, other, field, "a string")),
    }
}

fn optional_string(
    j: &mut Lexer,
    field: &str,
    decoded: &mut String,
) -> Result<Option<Span>, Rejection> {
    match j.peek()? {
        Peek::String => Ok(Some(keep(j, decoded)?)),
        Peek::Null => Ok(j.null().map(|()| None)?),
        other => Err(wrong_type(j, other, field, "a string or null")),
    }
}

fn boolean(j: &mut Lexer, field: &str) -> Result<bool, Rejection> {
    match j.peek()? {
        peek @ (Peek::True | Peek::False) => Ok(j.boolean(peek)?),
        other => Err(wrong_type(j, other, field, "a boolean")),
    }
}

/// A whole number within u64; a fraction, an exponent or a sign is `schema`
/// (after the number is checked as JSON and as a double).
fn unsigned(j: &mut Lexer, field: &str) -> Result<u64, Rejection> {
    let peek = j.peek()?;
    if peek != Peek::Number {
        return Err(wrong_type(j, peek, field, "a whole number"));
    }
    let at = j.index();
    let number = j.number()?;
    finite(number, at)?;
    Some(number)
        .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| {
            schema(format!(
                "field `{field}`: expected a whole number from 0 to {}",
                u64::MAX
            ))
        })
}

/// The schema error for a value of the wrong type, unless a scalar there is
/// not JSON at all (then that is the error). A container is not read: its
/// first byte decides, as in serde.
fn wrong_type(j: &mut Lexer, peek: Peek, field: &str, expected: &str) -> Rejection {
    if !matches!(peek, Peek::Array | Peek::Object)
        && let Err(bad) = skip(j, 1)
    {
        return bad;
    }
    schema(format!(
        "field `{field}`: expected {expected}, found {}",
        kind(peek)
    ))
}

/// An object value, or the error for whatever else is there.
fn object(j: &mut Lexer, field: &str) -> Result<(), Rejection> {
    match j.peek()? {
        Peek::Object => Ok(()),
        other => Err(wrong_type(j, other, field, "an object")),
    }
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, strum::EnumString, strum::IntoStaticStr, strum::VariantArray,
)]
#[strum(serialize_all = "camelCase")]
enum ConsentField {
    Analytics,
    Marketing,
    Preferences,
    SaleOfData,
}

/// Consent names exactly its flags: an unknown one might be a consent the
/// customer did not give, so it is an error rather than ignored.
fn consent(j: &mut Lexer) -> Result<Consent, Rejection> {
    object(j, "consent")?;
    let (mut c, mut seen) = (Consent::default(), Seen::default());
    let classify = |k: &str| k.parse::<ConsentField>().map_err(|_| k.to_owned());
    members(j, Ok, classify, |j, field| {
        let field = field.map_err(|key| {
            schema(format!(
                "unknown field `{key}` in `consent`, expected one of \
                 `analytics`, `marketing`, `preferences`, `saleOfData`"
            ))
        })?;
        seen.first(field, field as u8)?;
        let flag = boolean(j, field.into())?;
        match field {
            ConsentField::Analytics => c.analytics = flag,
            ConsentField::Marketing => c.marketing = flag,
            ConsentField::Preferences => c.preferences = flag,
            ConsentField::SaleOfData => c.sale_of_data = flag,
        }
        Ok(())
    })?;
    Ok(c)
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, strum::EnumString, strum::IntoStaticStr, strum::VariantArray,
)]
#[strum(serialize_all = "camelCase")]
enum ContextField {
    Url,
    Referrer,
    UserAgent,
}

impl From<ContextField> for u8 {
    fn from(f: ContextField) -> u8 {
        f as u8
    }
}

fn context(j: &mut Lexer, e: &mut Event) -> Result<(), Rejection> {
    optional_strings(j, "context", &mut e.decoded, |field, value| match field {
        ContextField::Url => e.url = value,
        ContextField::Referrer => e.referrer = value,
        ContextField::UserAgent => e.user_agent = value,
    })
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, strum::EnumString, strum::IntoStaticStr, strum::VariantArray,
)]
#[strum(serialize_all = "camelCase")]
enum CustomerField {
    Email,
    Phone,
}

impl From<CustomerField> for u8 {
    fn from(f: CustomerField) -> u8 {
        f as u8
    }
}

fn customer(j: &mut Lexer, e: &mut Event) -> Result<(), Rejection> {
    optional_strings(j, "customer", &mut e.decoded, |field, value| match field {
        CustomerField::Email => e.email = value,
        CustomerField::Phone => e.phone = value,
    })
}

/// An object of optional strings (`context`, `customer`) one level inside the
/// event: each named field at most once, a string or null; other members
/// checked and stepped over.
fn optional_strings<F>(
    j: &mut Lexer,
    name: &str,
    decoded: &mut String,
    mut set: impl FnMut(F, Option<Span>),
) -> Result<(), Rejection>
where
    F: Copy + PartialEq + std::str::FromStr + Into<&'static str> + strum::VariantArray,
    u8: From<F>,
{
    object(j, name)?;
    let mut seen = Seen::default();
    members(
        j,
        Some,
        |k| k.parse::<F>().ok(),
        |j, field| {
            let Some(field) = field else {
                return skip(j, 2);
            };
            seen.first(field, u8::from(field))?;
            set(field, optional_string(j, field.into(), decoded)?);
            Ok(())
        },
    )
}

/// `data` as the raw text it arrived as, after checking all of it; `null`
/// is no data.
fn data(j: &mut Lexer) -> Result<Option<Span>, Rejection> {
    let peek = j.peek()?;
    if peek == Peek::Null {
        return Ok(j.null().map(|()| None)?);
    }
    let start = j.index();
    skip(j, 1)?;
    Ok(Some(Span::new(start, j.index(), false)))
}
