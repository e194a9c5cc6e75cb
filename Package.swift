// swift-tools-version:6.0
import PackageDescription

// The house (see README and ../shared/ARCHITECTURE.md): arrows point down only.
//   ferry -> Training -> NN, Optim, Data -> TensorCore -> System
//   ferry -> Tunnels -> SSH -> System;  ferry -> Jobs -> SSH
// System (errno, atomic writes, spawn, locks) is the ground under both stacks.
// The engine's kernels are compiled for AVX2 + FMA (x86-64-v3: every x86 server CPU since 2013),
// which doubles the width of every SIMD loop. `ferry` checks the CPU before engine code runs and
// says so on an older one; the runner side (agent, jobs, tunnels) is compiled for baseline x86-64.
#if arch(x86_64)
let engineFlags: [SwiftSetting] = [.unsafeFlags(["-target-cpu", "haswell"])]
#else
let engineFlags: [SwiftSetting] = []
#endif

let package = Package(
    name: "ferry",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "ferry", targets: ["ferry"]),
        .executable(name: "Benchmarks", targets: ["Benchmarks"]),
        .executable(name: "ferry-gpu-check", targets: ["ferry-gpu-check"]),
        .library(name: "System", targets: ["System"]),
        .library(name: "RunContract", targets: ["RunContract"]),
        .library(name: "TensorCore", targets: ["TensorCore"]),
        .library(name: "NN", targets: ["NN"]),
        .library(name: "Optim", targets: ["Optim"]),
        .library(name: "Data", targets: ["Data"]),
        .library(name: "Training", targets: ["Training"]),
        .library(name: "SSH", targets: ["SSH"]),
        .library(name: "Jobs", targets: ["Jobs"]),
        .library(name: "Tunnels", targets: ["Tunnels"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-crypto", "3.0.0"..<"4.0.0"),
    ],
    targets: [
        // C shims: each a module map plus one header over a Debian library.
        // oneDNN is opened with dlopen at first use (a host without it still runs the runner side),
        // so CDNNL carries the header only and links nothing.
        .systemLibrary(name: "CDNNL", path: "Sources/CDNNL"),
        .systemLibrary(name: "CZlib", path: "Sources/CZlib", pkgConfig: "zlib", providers: [.apt(["zlib1g-dev"])]),
        .systemLibrary(name: "CLibSSH", path: "Sources/CLibSSH", pkgConfig: "libssh", providers: [.apt(["libssh-dev"])]),
        .systemLibrary(name: "CCurl", path: "Sources/CCurl", pkgConfig: "libcurl", providers: [.apt(["libcurl4-openssl-dev"])]),

        // The ground: every system call, atomic write and spawn, written once. Baseline x86-64.
        .target(name: "System"),

        // The run contract: events, FERRY_* names, exit statuses. Training writes, Jobs reads.
        .target(name: "RunContract", dependencies: ["System"]),

        // Engine
        .target(name: "TensorCore", dependencies: ["System", "CDNNL"], exclude: ["CUDA/kernels.cu", "CUDA/emulation.h"], swiftSettings: engineFlags),
        .target(name: "NN", dependencies: ["TensorCore"], swiftSettings: engineFlags),
        .target(name: "Optim", dependencies: ["TensorCore", "System"], swiftSettings: engineFlags),
        .target(name: "Data", dependencies: ["TensorCore", "CZlib"], swiftSettings: engineFlags),
        .target(name: "Training", dependencies: ["System", "RunContract", "TensorCore", "NN", "Optim", "Data"], swiftSettings: engineFlags),

        // Runner
        .target(name: "SSH", dependencies: ["System", "CLibSSH", .product(name: "Crypto", package: "swift-crypto")]),
        .target(name: "Jobs", dependencies: ["System", "RunContract", "SSH", .product(name: "Crypto", package: "swift-crypto")]),
        .target(name: "Tunnels", dependencies: ["System", "SSH", "CCurl"]),

        // Roof
        .executableTarget(name: "ferry", dependencies: [
            "System", "RunContract", "TensorCore", "NN", "Optim", "Data", "Training", "SSH", "Jobs", "Tunnels",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),
        .executableTarget(name: "Benchmarks", dependencies: ["TensorCore", "NN", "Optim", "Data", "SSH", "Jobs"],
                          path: "Benchmarks", swiftSettings: engineFlags),
        // The engine on a GPU against PyTorch on the same GPU: built here (static), run there by scripts/gpu-check.sh.
        .executableTarget(name: "ferry-gpu-check", dependencies: ["TensorCore", "NN", "Optim", "Data"],
                          path: "Tools/GPUCheck", swiftSettings: engineFlags),

        // Shared by the test targets: the repository's paths and the throwaway test sshd.
        .target(name: "FerryTestSupport", path: "Tests/FerryTestSupport"),
        // Shared by a module's tests and the end-to-end tests of `ferry` (Tests/ferryTests).
        .target(name: "TrainingTestSupport", dependencies: ["Data", "TensorCore", "FerryTestSupport"], path: "Tests/TrainingTestSupport"),
        .target(name: "JobsTestSupport", dependencies: ["Jobs", "System", "FerryTestSupport"], path: "Tests/JobsTestSupport"),
        .target(name: "SSHTestSupport", dependencies: ["SSH", "FerryTestSupport"], path: "Tests/SSHTestSupport"),
        .target(name: "TunnelsTestSupport", dependencies: ["SSH", "FerryTestSupport"], path: "Tests/TunnelsTestSupport"),

        .testTarget(name: "TensorCoreTests", dependencies: ["TensorCore"], resources: [.copy("Fixtures")]),
        .testTarget(name: "NNTests", dependencies: ["NN", "TensorCore"]),
        .testTarget(name: "OptimTests", dependencies: ["Optim", "NN", "TensorCore"], resources: [.copy("Fixtures")]),
        .testTarget(name: "DataTests", dependencies: ["Data", "TensorCore"], resources: [.copy("Fixtures")]),
        .testTarget(name: "TrainingTests", dependencies: ["Training", "NN", "Optim", "Data", "TensorCore", "FerryTestSupport", "TrainingTestSupport"]),
        .testTarget(name: "SSHTests", dependencies: ["SSH", "System", "FerryTestSupport", "SSHTestSupport"]),
        .testTarget(name: "JobsTests", dependencies: ["Jobs", "RunContract", "SSH", "System", "FerryTestSupport", "JobsTestSupport"], resources: [.copy("Fixtures")]),
        .testTarget(name: "TunnelsTests", dependencies: ["Tunnels", "Jobs", "SSH", "System", "FerryTestSupport", "TunnelsTestSupport"]),
        .testTarget(name: "SystemTests", dependencies: ["System"]),
        .testTarget(name: "RunContractTests", dependencies: ["RunContract", "Training", "Jobs", "System", "FerryTestSupport"]),
        // End to end: the built `ferry` run as a process (swift-argument-parser's split).
        .testTarget(name: "ferryTests", dependencies: ["FerryTestSupport", "TrainingTestSupport", "JobsTestSupport", "SSHTestSupport", "TunnelsTestSupport",
                                                       "Training", "NN", "Data", "TensorCore", "Jobs", "SSH", "Tunnels", "System"]),
    ]
)
