//! Keeping resident memory close to what the model needs, with glibc's malloc.
//!
//! Two habits of glibc inflate a model server's memory. Every thread that allocates gets one
//! of up to 8 arenas per core, and each arena keeps the memory freed into it: inference runs
//! on whichever request thread took the request, so over time each arena holds a whole run's
//! activations (16 arenas x 90 MB for resnet50 on 2 cores was 1.6 GB). And freed memory in
//! the middle of a heap stays resident: loading a model leaves its parsed protobuf behind.
//!
//! So the arenas are capped at start-up, and free memory is handed back to the system after
//! loading the model and whenever the server has been idle for a moment. Elsewhere (musl's
//! malloc, other systems) these do nothing.

/// Caps malloc's arenas: enough that request threads rarely wait on each other's
/// allocations, few enough that freed activations are reused rather than multiplied.
pub fn limit_arenas(workers: usize) {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let arenas = (2 * workers).clamp(2, 64) as libc::c_int;
        // SAFETY: mallopt only changes malloc's tuning; called before the threads start.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, arenas);
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    let _ = workers;
}

/// Returns free heap memory to the system.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases pages malloc holds free.
    unsafe {
        libc::malloc_trim(0);
    }
}
