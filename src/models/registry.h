// model_type registry: maps config.json's model_type (and its aliases) to an architecture, and
// architectures to factories that the architecture files register.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace ingot::models {

class Model;
class Checkpoint;

/// Builds a model from an open checkpoint (config + weights).
using ModelFactory = std::function<std::shared_ptr<Model>(const Checkpoint&)>;

/// The architecture a model_type belongs to ("gemma3_text" and "gemma3" -> "gemma3"); nullopt
/// for an unknown model_type.
std::optional<std::string> architecture_of(const std::string& model_type);

/// Every model_type the loader understands, sorted.
std::vector<std::string> supported_model_types();

/// architecture_of, or FormatError "[config] <source>: unsupported model_type '<t>' (supported:
/// gemma3, gemma3_text, llama, qwen3)".
std::string resolve_architecture(const std::string& model_type, const std::string& source);

/// Registers an architecture's factory (architecture files call this, e.g. through
/// ModelRegistrar at static initialisation). A second registration replaces the first.
void register_architecture(const std::string& architecture, ModelFactory factory);

/// The registered factory; throws Unsupported "[models] ..." when none is registered.
const ModelFactory& model_factory(const std::string& architecture);

/// True when a factory is registered for the architecture.
bool has_model_factory(const std::string& architecture);

/// Registers the architectures built into the library (llama, qwen3, gemma3) once; load_model
/// and init_model call it, so that a static link keeps the architecture files.
void register_builtin_architectures();

/// Registers a factory at static-initialisation time.
struct ModelRegistrar {
  ModelRegistrar(const std::string& architecture, ModelFactory factory) {
    register_architecture(architecture, std::move(factory));
  }
};

}  // namespace ingot::models
