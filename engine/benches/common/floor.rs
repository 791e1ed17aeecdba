//! wasmtime's own floor for a fresh instance: components that do no work, on the rules' engine.
//!
//! Each is instantiated in a fresh `Store`, called once and dropped, exactly as a rule is, so
//! the gap between a floor and the rule is what the rule itself costs.

use wasmtime::component::{Component, ComponentExportIndex, InstancePre, Linker, TypedFunc};
use wasmtime::{Engine, Store};

/// One core instance, no memory, no imports: a function that returns a constant.
const ONE_INSTANCE: &str = r#"
(component
  (core module $m
    (func (export "f") (result i32) i32.const 7))
  (core instance $i (instantiate $m))
  (func (export "f") (result u32) (canon lift (core func $i "f"))))
"#;

/// The same with the embedded rules' initial memory (3 pages: 192 KiB), one byte written.
const WITH_MEMORY: &str = r#"
(component
  (core module $m
    (memory (export "memory") 3)
    (func (export "f") (result i32)
      (i32.store8 (i32.const 70000) (i32.const 1))
      i32.const 7))
  (core instance $i (instantiate $m))
  (func (export "f") (result u32) (canon lift (core func $i "f"))))
"#;

/// The embedded rules' shape with no work: the memory, and one host import lowered
/// through the shim / main / fixup instances that `wit-component` makes when an import
/// needs the module's own memory (three core instances and a table).
const RULE_SHAPE: &str = r#"
(component
  (import "log" (func $log (param "message" string)))
  (core module $shim
    (table (export "$imports") 1 1 funcref)
    (func (export "0") (param i32 i32)
      local.get 0
      local.get 1
      i32.const 0
      call_indirect (param i32 i32)))
  (core module $main
    (import "host" "log" (func (param i32 i32)))
    (memory (export "memory") 3)
    (func (export "f") (result i32)
      (i32.store8 (i32.const 70000) (i32.const 1))
      i32.const 7))
  (core module $fixup
    (import "" "$imports" (table 1 1 funcref))
    (import "" "0" (func $lowered (param i32 i32)))
    (elem (i32.const 0) func $lowered))
  (core instance $shim (instantiate $shim))
  (core instance $main (instantiate $main
    (with "host" (instance (export "log" (func $shim "0"))))))
  (alias core export $main "memory" (core memory $memory))
  (core func $log_lowered (canon lower (func $log) (memory $memory)))
  (core instance (instantiate $fixup
    (with "" (instance
      (export "$imports" (table $shim "$imports"))
      (export "0" (func $log_lowered))))))
  (func (export "f") (result u32) (canon lift (core func $main "f"))))
"#;

/// A component ready to instantiate, call and drop, again and again.
pub struct Floor {
    engine: Engine,
    pre: InstancePre<()>,
    f: ComponentExportIndex,
}

impl Floor {
    /// The floors, each with its bench label.
    pub fn all(engine: &Engine) -> Vec<(&'static str, Floor)> {
        [
            ("floor: 1 core instance, no memory", ONE_INSTANCE),
            ("floor: 1 core instance, 192 KiB memory", WITH_MEMORY),
            (
                "floor: the rules' shape (3 instances, 1 import)",
                RULE_SHAPE,
            ),
        ]
        .into_iter()
        .map(|(label, wat)| (label, Floor::new(engine, wat)))
        .collect()
    }

    fn new(engine: &Engine, wat: &str) -> Floor {
        let wasm = wat::parse_str(wat).expect("floor component text");
        let component = Component::new(engine, &wasm).expect("compile floor component");
        let mut linker = Linker::<()>::new(engine);
        linker
            .root()
            .func_wrap("log", |_, (_message,): (String,)| Ok(()))
            .expect("define log");
        let f = component.get_export_index(None, "f").expect("export f");
        let pre = linker.instantiate_pre(&component).expect("link floor");
        Floor {
            engine: engine.clone(),
            pre,
            f,
        }
    }

    /// A fresh store, limited as a rule's is, an instance, one call, and the drop.
    pub fn run(&self) -> u32 {
        let mut store = Store::new(&self.engine, ());
        store.set_fuel(1_000_000).expect("fuel is enabled");
        store.set_epoch_deadline(1_000);
        store.epoch_deadline_trap();
        let instance = self.pre.instantiate(&mut store).expect("instantiate");
        let f: TypedFunc<(), (u32,)> = instance.get_typed_func(&mut store, self.f).expect("f");
        f.call(&mut store, ()).expect("call").0
    }
}
