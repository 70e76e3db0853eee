#!/usr/bin/env pwsh
# Build, test, benchmark or publish SkTuning.Gpu.
# Runs under PowerShell installed as a local dotnet tool:  dotnet tool restore; dotnet pwsh ./build.ps1 <target>
param(
    [ValidateSet('build', 'test', 'bench', 'publish', 'publish-device', 'pack')]
    [string] $Target = 'build',
    [string] $Configuration = 'Release',
    [string] $Filter = ''
)
$ErrorActionPreference = 'Stop'
Set-Location $PSScriptRoot

function Invoke-Checked([string] $exe, [string[]] $arguments) {
    & $exe @arguments
    if ($LASTEXITCODE -ne 0) { throw "$exe $($arguments -join ' ') failed with exit code $LASTEXITCODE" }
}

switch ($Target) {
    'build' { Invoke-Checked dotnet @('build', 'SkTuning.Gpu.sln', '-c', $Configuration) }
    'test' {
        $a = @('test', 'SkTuning.Gpu.sln', '-c', $Configuration)
        if ($Filter) { $a += @('--filter', $Filter) }
        Invoke-Checked dotnet $a
    }
    'bench' {
        # BenchmarkDotNet suites; pass a filter such as '*Gemm*' (default: all).
        $f = if ($Filter) { $Filter } else { '*' }
        Invoke-Checked dotnet @('run', '-c', 'Release', '--project', 'benchmarks/SkTuning.Gpu.Benchmarks', '--', '--filter', $f)
    }
    'publish' {
        Invoke-Checked dotnet @('publish', 'src/SkTuning.Gpu.Cli', '-c', 'Release', '-o', '.publish/sktune')
    }
    'pack' {
        # NuGet packages into .publish/packages: SkTuning.Gpu.Kernels and SkTuning.Gpu (+ .snupkg symbols), and the
        # sktune tool (a pointer package plus one per RID). Builds go to .publish/artifacts, not the repo's bin/ and obj/
        # (the tool restores ONNX Runtime's CPU package where the repo's build uses the GPU one).
        Invoke-Checked dotnet @('pack', 'SkTuning.Gpu.sln', '-c', $Configuration, '--artifacts-path', '.publish/artifacts', '-o', '.publish/packages')
    }
    'publish-device' {
        # Self-contained single file for the CUDA check machine (no .NET there; at most 64 MiB travels):
        # the CPU ONNX Runtime package replaces the GPU one, whose CUDA provider alone is 284 MB.
        Invoke-Checked dotnet @('publish', 'src/SkTuning.Gpu.Cli', '-c', 'Release', '-r', 'linux-x64', '--self-contained',
            '-p:PublishSingleFile=true', '-p:EnableCompressionInSingleFile=true', '-p:IncludeNativeLibrariesForSelfExtract=true',
            '-p:InvariantGlobalization=true', '-p:OrtCpu=true', '-p:BundleModels=false', '-o', '.publish/device')
    }
}
