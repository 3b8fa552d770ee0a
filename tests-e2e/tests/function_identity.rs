//! A record belongs to exactly one function: same-named functions, methods of
//! different types and instantiations of one generic function never share the
//! default scope, so none of them replays another's result.

use std::sync::{LazyLock, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use idempotent_core::backend::{CasOutcome, ClaimOutcome, FencingToken, Fingerprint};
use idempotent_core::{Backend, BackendError, MemoryBackend};
use idempotent_redis::RedisBackend;
use idempotent_test_support::RedisServer;

/// Same-named functions and methods in one module, as issue 12 found them:
/// each body says which function ran. The store is an argument, so the same
/// functions run on memory and on Redis.
mod shop {
    use std::marker::PhantomData;

    use idempotent_core::{idempotent, Backend, Error};

    pub struct Usd;
    pub struct Eur;
    pub struct Orders;
    pub struct Subs<C>(pub PhantomData<C>);

    #[idempotent(skip(store), backend = store)]
    pub async fn cancel(store: &dyn Backend, id: u64) -> Result<String, Error> {
        Ok(format!("cancel {id}"))
    }

    impl Orders {
        #[idempotent(skip(store), backend = store)]
        pub async fn cancel(&self, store: &dyn Backend, id: u64) -> Result<String, Error> {
            Ok(format!("Orders::cancel {id}"))
        }
    }

    impl<C> Subs<C> {
        #[idempotent(skip(store), backend = store)]
        pub async fn cancel(&self, store: &dyn Backend, id: u64) -> Result<String, Error> {
            Ok(format!("Subs::cancel {id}"))
        }
    }

    #[idempotent(skip(store), backend = store)]
    pub async fn price<C>(store: &dyn Backend, id: u64) -> Result<String, Error> {
        Ok(format!("{id} in {}", std::any::type_name::<C>()))
    }
}

async fn same_named_functions_each_run(store: &dyn Backend) {
    assert_eq!(shop::cancel(store, 1).await.unwrap(), "cancel 1");
    assert_eq!(
        shop::Orders.cancel(store, 1).await.unwrap(),
        "Orders::cancel 1"
    );
    let subs = shop::Subs::<shop::Usd>(Default::default());
    assert_eq!(subs.cancel(store, 1).await.unwrap(), "Subs::cancel 1");
    // And each still replays its own record.
    assert_eq!(
        shop::Orders.cancel(store, 1).await.unwrap(),
        "Orders::cancel 1"
    );
}

async fn generic_instantiations_each_run(store: &dyn Backend) {
    let usd = shop::price::<shop::Usd>(store, 1).await.unwrap();
    let eur = shop::price::<shop::Eur>(store, 1).await.unwrap();
    assert_eq!(usd, "1 in function_identity::shop::Usd");
    assert_eq!(eur, "1 in function_identity::shop::Eur");
}

#[tokio::test]
async fn a_free_function_and_same_named_methods_each_run() {
    same_named_functions_each_run(&MemoryBackend::new()).await;
}

#[tokio::test]
async fn each_instantiation_of_a_generic_function_runs() {
    generic_instantiations_each_run(&MemoryBackend::new()).await;
}

#[tokio::test]
async fn on_redis_each_function_and_instantiation_runs() {
    let server = RedisServer::start();
    let store = RedisBackend::connect(&server.url()).await.unwrap();
    same_named_functions_each_run(&store).await;
    generic_instantiations_each_run(&store).await;
}

/// Records the stored key of every claim, so a test can read the scope the
/// macro chose. Only `pinned` uses it, so no other test's keys mix in.
struct Recorder {
    store: MemoryBackend,
    keys: Mutex<Vec<String>>,
}

static RECORDER: LazyLock<Recorder> = LazyLock::new(|| Recorder {
    store: MemoryBackend::new(),
    keys: Mutex::new(Vec::new()),
});

#[async_trait]
impl Backend for Recorder {
    async fn claim(
        &self,
        key: &str,
        fingerprint: &Fingerprint,
        token: FencingToken,
        lease: Duration,
    ) -> Result<ClaimOutcome, BackendError> {
        self.keys.lock().unwrap().push(key.to_owned());
        self.store.claim(key, fingerprint, token, lease).await
    }

    async fn complete(
        &self,
        key: &str,
        token: FencingToken,
        output: &[u8],
        ttl: Duration,
    ) -> Result<CasOutcome, BackendError> {
        self.store.complete(key, token, output, ttl).await
    }

    async fn release(&self, key: &str, token: FencingToken) -> Result<CasOutcome, BackendError> {
        self.store.release(key, token).await
    }

    async fn renew(
        &self,
        key: &str,
        token: FencingToken,
        lease: Duration,
    ) -> Result<CasOutcome, BackendError> {
        self.store.renew(key, token, lease).await
    }

    /// The memory store's operations finish at once: none is detached.
    fn detached(&self) -> Option<std::sync::Arc<dyn Backend>> {
        None
    }
}

/// One function of each kind, all named `cancel` where Rust allows it, on
/// the recording store.
mod pinned {
    use idempotent_core::{idempotent, Error};

    use super::RECORDER;

    pub struct Usd;
    pub struct Eur;
    pub struct Orders;
    pub struct Subs<C>(pub C);

    pub(crate) trait Cancel {
        async fn cancel(&self) -> Result<(), Error>;

        /// A default method: its scope names the implementing type.
        #[idempotent(backend = &*RECORDER)]
        async fn refund(&self) -> Result<(), Error> {
            Ok(())
        }
    }

    #[idempotent(backend = &*RECORDER)]
    pub async fn cancel() -> Result<(), Error> {
        Ok(())
    }

    #[idempotent(backend = &*RECORDER)]
    pub async fn price<C>() -> Result<(), Error> {
        Ok(())
    }

    impl Orders {
        #[idempotent(backend = &*RECORDER)]
        pub async fn cancel(&self) -> Result<(), Error> {
            Ok(())
        }

        #[idempotent(backend = &*RECORDER)]
        pub async fn make() -> Result<(), Error> {
            Ok(())
        }

        #[idempotent(backend = &*RECORDER)]
        pub async fn note<'a>(&'a self, text: &'a str) -> Result<(), Error> {
            let _ = text;
            Ok(())
        }
    }

    impl<C> Subs<C> {
        #[idempotent(backend = &*RECORDER)]
        pub async fn cancel(&self) -> Result<(), Error> {
            Ok(())
        }
    }

    impl Cancel for Usd {
        #[idempotent(backend = &*RECORDER)]
        async fn cancel(&self) -> Result<(), Error> {
            Ok(())
        }
    }

    pub mod nested {
        pub mod deeper {
            use idempotent_core::{idempotent, Error};

            use crate::RECORDER;

            #[idempotent(backend = &*RECORDER)]
            pub async fn cancel() -> Result<(), Error> {
                Ok(())
            }
        }
    }
}

/// The exact default scopes on the pinned toolchain (rust-toolchain.toml):
/// the package's name, then the function's path.
///
/// They come from `core::any::type_name`, whose text Rust does not promise
/// to keep across compiler versions. This test documents what the stored
/// keys rely on: if a new compiler fails it, stored records would move to
/// new keys (retries would run again once), so read the release notes and
/// give long-lived functions an explicit `scope = "..."` before upgrading.
#[tokio::test]
async fn pinned() {
    use pinned::*;

    cancel().await.unwrap();
    Orders.cancel().await.unwrap();
    Subs(Usd).cancel().await.unwrap();
    price::<Usd>().await.unwrap();
    price::<Eur>().await.unwrap();
    Cancel::cancel(&Usd).await.unwrap();
    Usd.refund().await.unwrap();
    Orders::make().await.unwrap();
    Orders.note("lifetimes are erased").await.unwrap();
    nested::deeper::cancel().await.unwrap();

    let scopes: Vec<String> = RECORDER
        .keys
        .lock()
        .unwrap()
        .iter()
        .map(|key| key.rsplit_once(':').unwrap().0.to_owned())
        .collect();
    assert_eq!(
        scopes,
        [
            "idempotent-tests-e2e/function_identity::pinned::cancel",
            "idempotent-tests-e2e/function_identity::pinned::Orders::cancel",
            "idempotent-tests-e2e/function_identity::pinned::Subs<function_identity::pinned::Usd>::cancel",
            "idempotent-tests-e2e/function_identity::pinned::price<function_identity::pinned::Usd>",
            "idempotent-tests-e2e/function_identity::pinned::price<function_identity::pinned::Eur>",
            "idempotent-tests-e2e/<function_identity::pinned::Usd as function_identity::pinned::Cancel>::cancel",
            "idempotent-tests-e2e/<function_identity::pinned::Usd as function_identity::pinned::Cancel>::refund",
            "idempotent-tests-e2e/function_identity::pinned::Orders::make",
            "idempotent-tests-e2e/function_identity::pinned::Orders::note",
            "idempotent-tests-e2e/function_identity::pinned::nested::deeper::cancel",
        ]
    );
}

/// `scope = "..."` still pins the scope, whatever the function's identity:
/// two functions that name the same scope share records on purpose.
mod renamed {
    use idempotent_core::{idempotent, Error};

    #[idempotent(scope = "billing::refund")]
    pub async fn refund(id: u64) -> Result<String, Error> {
        Ok(format!("refund {id}"))
    }

    #[idempotent(scope = "billing::refund")]
    pub async fn refund_v2(id: u64) -> Result<String, Error> {
        Ok(format!("refund_v2 {id}"))
    }
}

#[tokio::test]
async fn an_explicit_scope_is_kept() {
    assert_eq!(renamed::refund(7).await.unwrap(), "refund 7");
    assert_eq!(renamed::refund_v2(7).await.unwrap(), "refund 7");
}

/// Same-named functions defined in two blocks of one function have one path:
/// the compiler prints both as `..::two_blocks::refund`. The first one used
/// keeps the default scope; the other is refused, never given its twin's
/// record.
#[tokio::test]
async fn same_named_functions_in_two_blocks_are_an_error_not_a_replay() {
    use idempotent_core::{idempotent, Error};

    async fn two_blocks() -> (Result<String, Error>, Result<String, Error>) {
        let first = {
            #[idempotent(key = order)]
            async fn refund(order: u64) -> Result<String, Error> {
                Ok(format!("first block refunded {order}"))
            }
            refund(5).await
        };
        let second = {
            #[idempotent(key = order)]
            async fn refund(order: u64) -> Result<String, Error> {
                Ok(format!("second block refunded {order}"))
            }
            refund(5).await
        };
        (first, second)
    }

    for _ in 0..2 {
        let (first, second) = two_blocks().await;
        assert_eq!(first.unwrap(), "first block refunded 5");
        assert_names_the_fix(second, "refund");
    }
}

/// The same for functions defined inside two closures of one function: both
/// print as `..::{{closure}}::ship`.
#[tokio::test]
async fn same_named_functions_in_two_closures_are_an_error_not_a_replay() {
    use idempotent_core::{idempotent, Error};

    let first = || async {
        #[idempotent(key = parcel)]
        async fn ship(parcel: u64) -> Result<String, Error> {
            Ok(format!("closure 1 shipped {parcel}"))
        }
        ship(3).await
    };
    let second = || async {
        #[idempotent(key = parcel)]
        async fn ship(parcel: u64) -> Result<String, Error> {
            Ok(format!("closure 2 shipped {parcel}"))
        }
        ship(3).await
    };
    for _ in 0..2 {
        assert_eq!(first().await.unwrap(), "closure 1 shipped 3");
        assert_names_the_fix(second().await, "ship");
    }
}

/// A function given an explicit scope is not in the way of a same-named
/// twin's default scope, and the twin with the explicit scope runs its own
/// body.
#[tokio::test]
async fn an_explicit_scope_resolves_two_same_named_functions() {
    use idempotent_core::{idempotent, Error};

    let first = {
        #[idempotent(key = order)]
        async fn void(order: u64) -> Result<String, Error> {
            Ok(format!("first voided {order}"))
        }
        void(9).await
    };
    let second = {
        #[idempotent(key = order, scope = "function_identity::void_v2")]
        async fn void(order: u64) -> Result<String, Error> {
            Ok(format!("second voided {order}"))
        }
        void(9).await
    };
    assert_eq!(first.unwrap(), "first voided 9");
    assert_eq!(second.unwrap(), "second voided 9");
}

/// The refusal: `InvalidConfig`, naming the scope of `function` and the fix,
/// `scope = "..."`.
fn assert_names_the_fix(result: Result<String, idempotent_core::Error>, function: &str) {
    match result {
        Err(idempotent_core::Error::InvalidConfig { reason }) => {
            assert!(
                reason.contains("`idempotent-tests-e2e/function_identity::"),
                "{reason}"
            );
            assert!(reason.contains(&format!("::{function}`")), "{reason}");
            assert!(reason.contains("scope = \""), "{reason}");
        }
        other => panic!("expected InvalidConfig for the second `{function}`, got {other:?}"),
    }
}

/// A known limit, pinned so that it is noticed if the compiler lifts it:
/// types declared inside function bodies print as that function's path plus
/// their name, so two local `Usd` types in two blocks of one function are
/// one type argument to the default scope, and `price::<Usd>` with the
/// second one replays the first one's record. Rust cannot tell such types
/// apart at run time (`TypeId` needs `'static`, which a generic function's
/// type parameters need not be), nor can the two instantiations share
/// anything but their text. The README says to name such types apart or to
/// give the function a `scope`.
#[tokio::test]
async fn local_types_with_one_name_are_one_type_argument() {
    use idempotent_core::{idempotent, Error};

    trait Named {
        fn name() -> &'static str;
    }

    #[idempotent(key = quote)]
    async fn price<C: Named>(quote: u64) -> Result<String, Error> {
        Ok(format!("quote {quote} in {}", C::name()))
    }

    let usd = {
        struct Usd;
        impl Named for Usd {
            fn name() -> &'static str {
                "usd"
            }
        }
        price::<Usd>(1).await
    };
    let other_usd = {
        struct Usd;
        impl Named for Usd {
            fn name() -> &'static str {
                "another usd"
            }
        }
        price::<Usd>(1).await
    };
    assert_eq!(usd.unwrap(), "quote 1 in usd");
    assert_eq!(other_usd.unwrap(), "quote 1 in usd");
}

/// A library and a binary of one package, both crates named `scope_twin`,
/// each with its own `billing::refund` (`src/scope_twin.rs`,
/// `src/bin/scope_twin.rs`): the binary calls both, and each runs its own
/// body.
#[test]
fn a_library_and_a_binary_with_one_crate_name_never_share_a_record() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_scope_twin"))
        .output()
        .expect("the scope_twin binary starts");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        stdout,
        "library: Ok(\"library refunded order-5\")\n\
         binary: Ok(\"binary logged a refund request for order-5\")\n"
    );
}
