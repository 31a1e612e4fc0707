//! The Bearer-token key the nodes on one bucket share (`auth/token-key`), so
//! a token one node issued is accepted by every other: a load balancer may
//! send a client's `/token` request to one node and its pulls to another.
//!
//! The first node to start on a bucket makes a random 32-byte key and creates
//! the object with a conditional create; every other node (and every restart)
//! reads it. Two nodes starting at once race on the create: the loser reads
//! the winner's key. The object holds the key as 64 hex digits and a newline.
//! Deleting it and restarting every node makes a new key (tokens last five
//! minutes, so clients fetch new ones at once).

use bytes::Bytes;

use super::Bucket;
use crate::store::StoreError;

/// Where the key lives, below the prefix.
pub const TOKEN_KEY: &str = "auth/token-key";

/// A key object larger than this is not ours.
const MAX_KEY_OBJECT: u64 = 256;

/// The key the nodes on `bucket` sign Bearer tokens with: read, or made and
/// created when no node made one yet. An object that is not a key is an
/// error naming it (a node must not sign with a key the others do not use).
pub async fn shared_token_key(bucket: &Bucket) -> Result<[u8; 32], StoreError> {
    // Two rounds: read, else create; a lost create race reads the winner's.
    for _ in 0..2 {
        if let Some(found) = bucket.get_small(TOKEN_KEY, MAX_KEY_OBJECT).await? {
            return parse(&found.bytes).ok_or_else(|| not_a_key(bucket));
        }
        let key = fresh_key()?;
        if bucket.create(TOKEN_KEY, Bytes::from(render(&key))).await? {
            return Ok(key);
        }
    }
    Err(StoreError::Io(std::sync::Arc::new(std::io::Error::other(
        format!(
            "bucket object {} could neither be read nor created (does the bucket exist, and may these credentials write to it?)",
            bucket.key(TOKEN_KEY)
        ),
    ))))
}

fn not_a_key(bucket: &Bucket) -> StoreError {
    StoreError::Corrupt(format!(
        "bucket object {} is not a token key (64 hex digits); delete it and every node makes and shares a new one at its next start",
        bucket.key(TOKEN_KEY)
    ))
}

fn fresh_key() -> Result<[u8; 32], StoreError> {
    let mut key = [0u8; 32];
    getrandom::fill(&mut key).map_err(|e| {
        StoreError::Io(std::sync::Arc::new(std::io::Error::other(format!(
            "no randomness for the token key: {e}"
        ))))
    })?;
    Ok(key)
}

fn render(key: &[u8; 32]) -> String {
    let mut s: String = key.iter().map(|b| format!("{b:02x}")).collect();
    s.push('\n');
    s
}

fn parse(bytes: &[u8]) -> Option<[u8; 32]> {
    let text = std::str::from_utf8(bytes).ok()?.trim_end_matches('\n');
    let key = super::hex32(text)?;
    // An all-zero key is what a failed random source would leave: refuse it.
    (key != [0u8; 32]).then_some(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rendered_key_parses_back_and_junk_does_not() {
        let key = fresh_key().unwrap();
        assert_eq!(parse(render(&key).as_bytes()), Some(key));
        assert_eq!(parse(render(&key).trim_end().as_bytes()), Some(key));
        assert_eq!(parse(b""), None);
        assert_eq!(parse(&[b'a'; 63]), None);
        assert_eq!(parse(&[b'g'; 64]), None);
        assert_eq!(parse(&[b'0'; 64]), None);
        assert_eq!(parse("é".repeat(32).as_bytes()), None);
    }

    #[tokio::test]
    async fn nodes_on_one_bucket_share_one_key_and_junk_is_refused() {
        let objects: std::sync::Arc<dyn object_store::ObjectStore> =
            std::sync::Arc::new(object_store::memory::InMemory::new());
        let a = Bucket::new(objects.clone(), "p/", "a");
        let b = Bucket::new(objects.clone(), "p/", "b");
        let other = Bucket::new(objects.clone(), "q/", "c");
        let ka = shared_token_key(&a).await.unwrap();
        assert_eq!(shared_token_key(&b).await.unwrap(), ka);
        assert_eq!(shared_token_key(&a).await.unwrap(), ka);
        assert_ne!(shared_token_key(&other).await.unwrap(), ka);
        a.put(TOKEN_KEY, Bytes::from_static(b"not a key"))
            .await
            .unwrap();
        let err = shared_token_key(&b).await.unwrap_err().to_string();
        assert!(err.contains("p/auth/token-key"), "{err}");
    }
}
