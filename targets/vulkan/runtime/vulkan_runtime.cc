// edgec's Vulkan runtime for the stock TVM wheel.
//
// Loaded into a process that already holds libtvm_runtime / libtvm_ffi, it registers
//   device_api.vulkan                        the DeviceAPI the Relax VM allocates and copies through
//   device_api.vulkan.get_target_property    what TVM's own target detection asks for
//   ffi.Module.load_from_bytes.vulkan        restores a kernel module packed by export_library
//   edgec.vulkan.device_info                 limits and features, for edgec's target preset
//
// The Vulkan loader is opened with dlopen on first use, so this library loads (and a model
// compiles) on machines without Vulkan; only running needs a loader and a device, and their
// absence is reported by name.
#define VK_NO_PROTOTYPES
#include <dlfcn.h>
#include <tvm/ffi/extra/module.h>
#include <tvm/ffi/function.h>
#include <tvm/ffi/reflection/registry.h>
#include <tvm/runtime/device_api.h>
#include <vulkan/vulkan.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <unordered_map>
#include <vector>

namespace edgec_vulkan {

using tvm::Device;
using tvm::runtime::DeviceAttrKind;
namespace ffi = tvm::ffi;

#define EDGEC_VK_GLOBAL_FUNCS(X) \
  X(vkCreateInstance)            \
  X(vkEnumerateInstanceVersion)

#define EDGEC_VK_INSTANCE_FUNCS(X)             \
  X(vkEnumeratePhysicalDevices)                \
  X(vkGetPhysicalDeviceProperties)             \
  X(vkGetPhysicalDeviceProperties2)            \
  X(vkGetPhysicalDeviceFeatures2)              \
  X(vkGetPhysicalDeviceQueueFamilyProperties)  \
  X(vkGetPhysicalDeviceMemoryProperties)       \
  X(vkEnumerateDeviceExtensionProperties)      \
  X(vkCreateDevice)                            \
  X(vkGetDeviceProcAddr)

#define EDGEC_VK_DEVICE_FUNCS(X)        \
  X(vkGetDeviceQueue)                   \
  X(vkCreateBuffer)                     \
  X(vkDestroyBuffer)                    \
  X(vkGetBufferMemoryRequirements)      \
  X(vkAllocateMemory)                   \
  X(vkFreeMemory)                       \
  X(vkBindBufferMemory)                 \
  X(vkMapMemory)                        \
  X(vkCreateCommandPool)                \
  X(vkAllocateCommandBuffers)           \
  X(vkBeginCommandBuffer)               \
  X(vkEndCommandBuffer)                 \
  X(vkResetCommandBuffer)               \
  X(vkCmdCopyBuffer)                    \
  X(vkCmdDispatch)                      \
  X(vkCmdBindPipeline)                  \
  X(vkCmdBindDescriptorSets)            \
  X(vkCmdPushConstants)                 \
  X(vkCmdPipelineBarrier)               \
  X(vkQueueSubmit)                      \
  X(vkCreateFence)                      \
  X(vkWaitForFences)                    \
  X(vkResetFences)                      \
  X(vkCreateShaderModule)               \
  X(vkDestroyShaderModule)              \
  X(vkCreateDescriptorSetLayout)        \
  X(vkCreatePipelineLayout)             \
  X(vkCreateComputePipelines)           \
  X(vkCreateDescriptorPool)             \
  X(vkResetDescriptorPool)              \
  X(vkAllocateDescriptorSets)           \
  X(vkUpdateDescriptorSets)

#define EDGEC_DECLARE(name) PFN_##name name = nullptr;
struct Api {
  PFN_vkGetInstanceProcAddr vkGetInstanceProcAddr = nullptr;
  EDGEC_VK_GLOBAL_FUNCS(EDGEC_DECLARE)
  EDGEC_VK_INSTANCE_FUNCS(EDGEC_DECLARE)
  EDGEC_VK_DEVICE_FUNCS(EDGEC_DECLARE)
};
#undef EDGEC_DECLARE

// Feature bits shared with the code generator (targets/vulkan/module_format.py).
enum Feature : uint32_t {
  kFloat16 = 1, kInt8 = 2, kInt16 = 4, kInt64 = 8, kFloat64 = 16, kStorage8 = 32, kStorage16 = 64,
};
static const std::pair<uint32_t, const char*> kFeatureNames[] = {
    {kFloat16, "shaderFloat16"},          {kInt8, "shaderInt8"},   {kInt16, "shaderInt16"},
    {kInt64, "shaderInt64"},              {kFloat64, "shaderFloat64"},
    {kStorage8, "storageBuffer8BitAccess"}, {kStorage16, "storageBuffer16BitAccess"},
};

std::string FeatureList(uint32_t mask) {
  std::string out;
  for (auto& [bit, name] : kFeatureNames) {
    if (mask & bit) out += (out.empty() ? "" : ", ") + std::string(name);
  }
  return out;
}

#define VK_CHECK(expr)                                                                 \
  do {                                                                                 \
    VkResult _r = (expr);                                                              \
    if (_r != VK_SUCCESS) {                                                            \
      TVM_FFI_THROW(RuntimeError) << "Vulkan call " #expr " failed with VkResult " << _r; \
    }                                                                                  \
  } while (0)

struct Buffer {
  VkBuffer buffer = VK_NULL_HANDLE;
  VkDeviceMemory memory = VK_NULL_HANDLE;
  void* host = nullptr;  // persistently mapped when the memory is host-visible
  size_t size = 0;
  int device_id = 0;
};

struct PhysicalInfo {
  VkPhysicalDevice handle;
  VkPhysicalDeviceProperties props;
  uint32_t subgroup_size = 1;
  uint32_t features = 0;
  uint64_t device_memory = 0;
};

class Instance;

// One logical device with one compute queue and one command stream. Kernels and copies are
// recorded into the stream and submitted together when the host needs a result.
class Gpu {
 public:
  Gpu(const Api& api, const PhysicalInfo& info, int id) : api_(api), info_(info), id_(id) { Create(); }

  const PhysicalInfo& info() const { return info_; }
  VkDevice device() const { return device_; }
  const Api& api() const { return api_; }
  std::mutex& mutex() { return mu_; }

  Buffer* Alloc(size_t nbytes) {
    auto buf = std::make_unique<Buffer>();
    buf->size = nbytes;
    buf->device_id = id_;
    VkBufferCreateInfo info{VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO};
    info.size = std::max<size_t>(nbytes, 4);
    info.usage = VK_BUFFER_USAGE_STORAGE_BUFFER_BIT | VK_BUFFER_USAGE_TRANSFER_SRC_BIT |
                 VK_BUFFER_USAGE_TRANSFER_DST_BIT;
    info.sharingMode = VK_SHARING_MODE_EXCLUSIVE;
    VK_CHECK(api_.vkCreateBuffer(device_, &info, nullptr, &buf->buffer));
    VkMemoryRequirements req;
    api_.vkGetBufferMemoryRequirements(device_, buf->buffer, &req);
    bool host_visible = false;
    uint32_t type = PickMemory(req.memoryTypeBits, &host_visible);
    VkMemoryAllocateInfo alloc{VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO};
    alloc.allocationSize = req.size;
    alloc.memoryTypeIndex = type;
    VkResult r = api_.vkAllocateMemory(device_, &alloc, nullptr, &buf->memory);
    if (r != VK_SUCCESS) {
      api_.vkDestroyBuffer(device_, buf->buffer, nullptr);
      TVM_FFI_THROW(RuntimeError) << "Vulkan device " << info_.props.deviceName << " is out of memory allocating "
                                  << nbytes << " bytes (VkResult " << r << ")";
    }
    VK_CHECK(api_.vkBindBufferMemory(device_, buf->buffer, buf->memory, 0));
    if (host_visible && !force_staging_) {
      VK_CHECK(api_.vkMapMemory(device_, buf->memory, 0, VK_WHOLE_SIZE, 0, &buf->host));
    }
    return buf.release();
  }

  void Free(Buffer* buf) {
    std::lock_guard<std::mutex> lock(mu_);
    FlushLocked();  // recorded work may still use the buffer
    api_.vkDestroyBuffer(device_, buf->buffer, nullptr);
    api_.vkFreeMemory(device_, buf->memory, nullptr);  // unmaps implicitly
    delete buf;
  }

  // Host -> device, device -> host and device -> device copies.
  void Copy(const void* from, size_t from_offset, void* to, size_t to_offset, size_t n, bool from_dev, bool to_dev) {
    if (n == 0) return;
    std::lock_guard<std::mutex> lock(mu_);
    auto* src = from_dev ? static_cast<const Buffer*>(from) : nullptr;
    auto* dst = to_dev ? static_cast<Buffer*>(to) : nullptr;
    if (src && dst) {
      Begin();
      VkBufferCopy region{from_offset, to_offset, n};
      api_.vkCmdCopyBuffer(cmd_, src->buffer, dst->buffer, 1, &region);
      Barrier();
      return;
    }
    FlushLocked();
    if (dst) {
      if (dst->host) {
        std::memcpy(static_cast<char*>(dst->host) + to_offset, static_cast<const char*>(from) + from_offset, n);
      } else {
        Buffer* staging = Staging(n);
        std::memcpy(staging->host, static_cast<const char*>(from) + from_offset, n);
        Begin();
        VkBufferCopy region{0, to_offset, n};
        api_.vkCmdCopyBuffer(cmd_, staging->buffer, dst->buffer, 1, &region);
        Barrier();
        FlushLocked();
      }
    } else {
      if (src->host) {
        std::memcpy(static_cast<char*>(to) + to_offset, static_cast<const char*>(src->host) + from_offset, n);
      } else {
        Buffer* staging = Staging(n);
        Begin();
        VkBufferCopy region{from_offset, 0, n};
        api_.vkCmdCopyBuffer(cmd_, src->buffer, staging->buffer, 1, &region);
        FlushLocked();
        std::memcpy(static_cast<char*>(to) + to_offset, staging->host, n);
      }
    }
  }

  void Sync() {
    std::lock_guard<std::mutex> lock(mu_);
    FlushLocked();
  }

  // Called with mu_ held.
  void Dispatch(VkPipeline pipeline, VkPipelineLayout layout, VkDescriptorSetLayout set_layout,
                const std::vector<Buffer*>& buffers, const std::vector<uint8_t>& push, const uint32_t grid[3]) {
    Begin();
    VkDescriptorSet set = AllocSet(set_layout);
    std::vector<VkDescriptorBufferInfo> infos(buffers.size());
    std::vector<VkWriteDescriptorSet> writes(buffers.size());
    for (size_t i = 0; i < buffers.size(); ++i) {
      infos[i] = {buffers[i]->buffer, 0, VK_WHOLE_SIZE};
      writes[i] = {VK_STRUCTURE_TYPE_WRITE_DESCRIPTOR_SET};
      writes[i].dstSet = set;
      writes[i].dstBinding = static_cast<uint32_t>(i);
      writes[i].descriptorCount = 1;
      writes[i].descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER;
      writes[i].pBufferInfo = &infos[i];
    }
    if (!writes.empty()) api_.vkUpdateDescriptorSets(device_, writes.size(), writes.data(), 0, nullptr);
    api_.vkCmdBindPipeline(cmd_, VK_PIPELINE_BIND_POINT_COMPUTE, pipeline);
    api_.vkCmdBindDescriptorSets(cmd_, VK_PIPELINE_BIND_POINT_COMPUTE, layout, 0, 1, &set, 0, nullptr);
    if (!push.empty()) {
      api_.vkCmdPushConstants(cmd_, layout, VK_SHADER_STAGE_COMPUTE_BIT, 0, push.size(), push.data());
    }
    api_.vkCmdDispatch(cmd_, grid[0], grid[1], grid[2]);
    Barrier();
  }

 private:
  void Create() {
    uint32_t nq = 0;
    api_.vkGetPhysicalDeviceQueueFamilyProperties(info_.handle, &nq, nullptr);
    std::vector<VkQueueFamilyProperties> families(nq);
    api_.vkGetPhysicalDeviceQueueFamilyProperties(info_.handle, &nq, families.data());
    queue_family_ = UINT32_MAX;
    for (uint32_t i = 0; i < nq; ++i) {
      if (families[i].queueFlags & VK_QUEUE_COMPUTE_BIT) {
        queue_family_ = i;
        break;
      }
    }
    if (queue_family_ == UINT32_MAX) {
      TVM_FFI_THROW(RuntimeError) << "Vulkan device " << info_.props.deviceName << " has no compute queue";
    }
    float priority = 1.0f;
    VkDeviceQueueCreateInfo qinfo{VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO};
    qinfo.queueFamilyIndex = queue_family_;
    qinfo.queueCount = 1;
    qinfo.pQueuePriorities = &priority;

    // Enable every optional feature the device has; shaders declare which ones they use.
    VkPhysicalDevice8BitStorageFeatures s8{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_8BIT_STORAGE_FEATURES};
    VkPhysicalDevice16BitStorageFeatures s16{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_16BIT_STORAGE_FEATURES};
    VkPhysicalDeviceShaderFloat16Int8Features f16{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SHADER_FLOAT16_INT8_FEATURES};
    VkPhysicalDeviceFeatures2 features{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2};
    uint32_t f = info_.features;
    s8.storageBuffer8BitAccess = (f & kStorage8) ? VK_TRUE : VK_FALSE;
    s16.storageBuffer16BitAccess = (f & kStorage16) ? VK_TRUE : VK_FALSE;
    f16.shaderFloat16 = (f & kFloat16) ? VK_TRUE : VK_FALSE;
    f16.shaderInt8 = (f & kInt8) ? VK_TRUE : VK_FALSE;
    features.features.shaderInt16 = (f & kInt16) ? VK_TRUE : VK_FALSE;
    features.features.shaderInt64 = (f & kInt64) ? VK_TRUE : VK_FALSE;
    features.features.shaderFloat64 = (f & kFloat64) ? VK_TRUE : VK_FALSE;
    features.pNext = &s16;
    std::vector<const char*> extensions;
    void** tail = &s16.pNext;
    if (HasExtension(VK_KHR_8BIT_STORAGE_EXTENSION_NAME) || info_.props.apiVersion >= VK_API_VERSION_1_2) {
      *tail = &s8;
      tail = &s8.pNext;
      if (info_.props.apiVersion < VK_API_VERSION_1_2) extensions.push_back(VK_KHR_8BIT_STORAGE_EXTENSION_NAME);
    }
    if (HasExtension(VK_KHR_SHADER_FLOAT16_INT8_EXTENSION_NAME) || info_.props.apiVersion >= VK_API_VERSION_1_2) {
      *tail = &f16;
      tail = &f16.pNext;
      if (info_.props.apiVersion < VK_API_VERSION_1_2) extensions.push_back(VK_KHR_SHADER_FLOAT16_INT8_EXTENSION_NAME);
    }
    VkDeviceCreateInfo dinfo{VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO};
    dinfo.pNext = &features;
    dinfo.queueCreateInfoCount = 1;
    dinfo.pQueueCreateInfos = &qinfo;
    dinfo.enabledExtensionCount = extensions.size();
    dinfo.ppEnabledExtensionNames = extensions.data();
    VK_CHECK(api_.vkCreateDevice(info_.handle, &dinfo, nullptr, &device_));
#define EDGEC_LOAD_DEVICE(name) \
  api_.name = reinterpret_cast<PFN_##name>(api_.vkGetDeviceProcAddr(device_, #name));
    EDGEC_VK_DEVICE_FUNCS(EDGEC_LOAD_DEVICE)
#undef EDGEC_LOAD_DEVICE
    api_.vkGetDeviceQueue(device_, queue_family_, 0, &queue_);
    VkCommandPoolCreateInfo pinfo{VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO};
    pinfo.flags = VK_COMMAND_POOL_CREATE_RESET_COMMAND_BUFFER_BIT;
    pinfo.queueFamilyIndex = queue_family_;
    VK_CHECK(api_.vkCreateCommandPool(device_, &pinfo, nullptr, &pool_));
    VkCommandBufferAllocateInfo cinfo{VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO};
    cinfo.commandPool = pool_;
    cinfo.level = VK_COMMAND_BUFFER_LEVEL_PRIMARY;
    cinfo.commandBufferCount = 1;
    VK_CHECK(api_.vkAllocateCommandBuffers(device_, &cinfo, &cmd_));
    VkFenceCreateInfo finfo{VK_STRUCTURE_TYPE_FENCE_CREATE_INFO};
    VK_CHECK(api_.vkCreateFence(device_, &finfo, nullptr, &fence_));
    VkDescriptorPoolSize size{VK_DESCRIPTOR_TYPE_STORAGE_BUFFER, kSetsPerBatch * 8};
    VkDescriptorPoolCreateInfo dpinfo{VK_STRUCTURE_TYPE_DESCRIPTOR_POOL_CREATE_INFO};
    dpinfo.maxSets = kSetsPerBatch;
    dpinfo.poolSizeCount = 1;
    dpinfo.pPoolSizes = &size;
    VK_CHECK(api_.vkCreateDescriptorPool(device_, &dpinfo, nullptr, &descriptor_pool_));
  }

  bool HasExtension(const char* name) {
    uint32_t n = 0;
    api_.vkEnumerateDeviceExtensionProperties(info_.handle, nullptr, &n, nullptr);
    std::vector<VkExtensionProperties> exts(n);
    api_.vkEnumerateDeviceExtensionProperties(info_.handle, nullptr, &n, exts.data());
    for (auto& e : exts) {
      if (std::strcmp(e.extensionName, name) == 0) return true;
    }
    return false;
  }

  uint32_t PickMemory(uint32_t allowed, bool* host_visible) {
    VkPhysicalDeviceMemoryProperties mem;
    api_.vkGetPhysicalDeviceMemoryProperties(info_.handle, &mem);
    const VkMemoryPropertyFlags mapped = VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT | VK_MEMORY_PROPERTY_HOST_COHERENT_BIT;
    // Unified memory (CPU devices, integrated GPUs) lets copies be plain memcpy.
    for (uint32_t want : {VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT | mapped, (uint32_t)VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT,
                          mapped}) {
      for (uint32_t i = 0; i < mem.memoryTypeCount; ++i) {
        if ((allowed & (1u << i)) && (mem.memoryTypes[i].propertyFlags & want) == want) {
          *host_visible = (mem.memoryTypes[i].propertyFlags & mapped) == mapped;
          return i;
        }
      }
    }
    TVM_FFI_THROW(RuntimeError) << "Vulkan device " << info_.props.deviceName << " has no usable memory type";
  }

  Buffer* Staging(size_t n) {
    if (staging_ && staging_->size >= n) return staging_.get();
    if (staging_) {
      api_.vkDestroyBuffer(device_, staging_->buffer, nullptr);
      api_.vkFreeMemory(device_, staging_->memory, nullptr);
    }
    VkPhysicalDeviceMemoryProperties mem;
    api_.vkGetPhysicalDeviceMemoryProperties(info_.handle, &mem);
    auto buf = std::make_unique<Buffer>();
    buf->size = n;
    VkBufferCreateInfo info{VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO};
    info.size = n;
    info.usage = VK_BUFFER_USAGE_TRANSFER_SRC_BIT | VK_BUFFER_USAGE_TRANSFER_DST_BIT;
    VK_CHECK(api_.vkCreateBuffer(device_, &info, nullptr, &buf->buffer));
    VkMemoryRequirements req;
    api_.vkGetBufferMemoryRequirements(device_, buf->buffer, &req);
    const VkMemoryPropertyFlags mapped = VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT | VK_MEMORY_PROPERTY_HOST_COHERENT_BIT;
    uint32_t type = UINT32_MAX;
    for (uint32_t i = 0; i < mem.memoryTypeCount; ++i) {
      if ((req.memoryTypeBits & (1u << i)) && (mem.memoryTypes[i].propertyFlags & mapped) == mapped) {
        type = i;
        break;
      }
    }
    if (type == UINT32_MAX) TVM_FFI_THROW(RuntimeError) << "Vulkan device has no host-visible memory for copies";
    VkMemoryAllocateInfo alloc{VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO};
    alloc.allocationSize = req.size;
    alloc.memoryTypeIndex = type;
    VK_CHECK(api_.vkAllocateMemory(device_, &alloc, nullptr, &buf->memory));
    VK_CHECK(api_.vkBindBufferMemory(device_, buf->buffer, buf->memory, 0));
    VK_CHECK(api_.vkMapMemory(device_, buf->memory, 0, VK_WHOLE_SIZE, 0, &buf->host));
    staging_ = std::move(buf);
    return staging_.get();
  }

  void Begin() {
    if (recording_) return;
    VkCommandBufferBeginInfo info{VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO};
    info.flags = VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT;
    VK_CHECK(api_.vkBeginCommandBuffer(cmd_, &info));
    recording_ = true;
  }

  // Every kernel may read what the previous one wrote: a full compute/transfer barrier.
  void Barrier() {
    VkMemoryBarrier barrier{VK_STRUCTURE_TYPE_MEMORY_BARRIER};
    barrier.srcAccessMask = VK_ACCESS_SHADER_WRITE_BIT | VK_ACCESS_TRANSFER_WRITE_BIT;
    barrier.dstAccessMask = VK_ACCESS_SHADER_READ_BIT | VK_ACCESS_SHADER_WRITE_BIT | VK_ACCESS_TRANSFER_READ_BIT |
                            VK_ACCESS_TRANSFER_WRITE_BIT;
    const VkPipelineStageFlags stages = VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT | VK_PIPELINE_STAGE_TRANSFER_BIT;
    api_.vkCmdPipelineBarrier(cmd_, stages, stages, 0, 1, &barrier, 0, nullptr, 0, nullptr);
  }

  VkDescriptorSet AllocSet(VkDescriptorSetLayout layout) {
    VkDescriptorSetAllocateInfo info{VK_STRUCTURE_TYPE_DESCRIPTOR_SET_ALLOCATE_INFO};
    info.descriptorPool = descriptor_pool_;
    info.descriptorSetCount = 1;
    info.pSetLayouts = &layout;
    VkDescriptorSet set;
    VkResult r = api_.vkAllocateDescriptorSets(device_, &info, &set);
    if (r == VK_ERROR_OUT_OF_POOL_MEMORY || r == VK_ERROR_FRAGMENTED_POOL) {
      FlushLocked();  // resets the pool once the recorded kernels have run
      Begin();
      r = api_.vkAllocateDescriptorSets(device_, &info, &set);
    }
    VK_CHECK(r);
    return set;
  }

  void FlushLocked() {
    if (!recording_) return;
    VK_CHECK(api_.vkEndCommandBuffer(cmd_));
    recording_ = false;
    VkSubmitInfo submit{VK_STRUCTURE_TYPE_SUBMIT_INFO};
    submit.commandBufferCount = 1;
    submit.pCommandBuffers = &cmd_;
    VK_CHECK(api_.vkQueueSubmit(queue_, 1, &submit, fence_));
    VK_CHECK(api_.vkWaitForFences(device_, 1, &fence_, VK_TRUE, UINT64_MAX));
    VK_CHECK(api_.vkResetFences(device_, 1, &fence_));
    VK_CHECK(api_.vkResetCommandBuffer(cmd_, 0));
    VK_CHECK(api_.vkResetDescriptorPool(device_, descriptor_pool_, 0));
  }

  static constexpr uint32_t kSetsPerBatch = 1024;
  Api api_;
  PhysicalInfo info_;
  int id_;
  VkDevice device_ = VK_NULL_HANDLE;
  VkQueue queue_ = VK_NULL_HANDLE;
  uint32_t queue_family_ = 0;
  VkCommandPool pool_ = VK_NULL_HANDLE;
  VkCommandBuffer cmd_ = VK_NULL_HANDLE;
  VkFence fence_ = VK_NULL_HANDLE;
  VkDescriptorPool descriptor_pool_ = VK_NULL_HANDLE;
  bool recording_ = false;
  // EDGEC_VULKAN_FORCE_STAGING=1: copy through a staging buffer even where device memory is
  // host-visible, the path discrete GPUs take (tested this way on CPU devices)
  bool force_staging_ = std::getenv("EDGEC_VULKAN_FORCE_STAGING") != nullptr;
  std::unique_ptr<Buffer> staging_;
  std::mutex mu_;
};

// The loader, the instance and the physical devices, best first. Created on first use; an
// error (no loader, no device) is remembered and re-raised with the same message.
class Instance {
 public:
  static Instance& Get() {
    static Instance inst;
    return inst;
  }

  void Require() {
    if (!error_.empty()) TVM_FFI_THROW(RuntimeError) << error_;
  }
  bool ok() const { return error_.empty(); }
  const std::string& error() const { return error_; }
  int count() const { return static_cast<int>(physical_.size()); }

  const PhysicalInfo& Physical(int id) {
    Require();
    if (id < 0 || id >= count()) {
      TVM_FFI_THROW(RuntimeError) << "Vulkan device " << id << " does not exist (this machine has " << count()
                                  << ")";
    }
    return physical_[id];
  }

  Gpu& Device(int id) {
    const PhysicalInfo& info = Physical(id);
    std::lock_guard<std::mutex> lock(mu_);
    auto& slot = gpus_[id];
    if (!slot) slot = std::make_unique<Gpu>(api_, info, id);
    return *slot;
  }

 private:
  Instance() {
    error_ = Init();
  }

  std::string Init() {
    // EDGEC_VULKAN_LOADER names another loader (a bundled one, SwiftShader's, a test's).
    const char* chosen = std::getenv("EDGEC_VULKAN_LOADER");
    std::vector<std::string> names = chosen ? std::vector<std::string>{chosen}
                                            : std::vector<std::string>{"libvulkan.so.1", "libvulkan.so"};
    void* lib = nullptr;
    for (const auto& n : names) {
      if ((lib = dlopen(n.c_str(), RTLD_NOW | RTLD_LOCAL))) break;
    }
    if (!lib) {
      return "Vulkan loader not found: " + names[0] + " could not be opened (install the Vulkan loader, "
             "e.g. the Debian package libvulkan1)";
    }
    api_.vkGetInstanceProcAddr = reinterpret_cast<PFN_vkGetInstanceProcAddr>(dlsym(lib, "vkGetInstanceProcAddr"));
    if (!api_.vkGetInstanceProcAddr) return "Vulkan loader libvulkan.so.1 has no vkGetInstanceProcAddr";
#define EDGEC_LOAD_GLOBAL(name) \
  api_.name = reinterpret_cast<PFN_##name>(api_.vkGetInstanceProcAddr(VK_NULL_HANDLE, #name));
    EDGEC_VK_GLOBAL_FUNCS(EDGEC_LOAD_GLOBAL)
#undef EDGEC_LOAD_GLOBAL
    uint32_t loader_version = VK_API_VERSION_1_0;
    if (api_.vkEnumerateInstanceVersion) api_.vkEnumerateInstanceVersion(&loader_version);
    if (loader_version < VK_API_VERSION_1_1) return "the Vulkan loader supports only Vulkan 1.0; edgec needs 1.1";
    VkApplicationInfo app{VK_STRUCTURE_TYPE_APPLICATION_INFO};
    app.pApplicationName = "edgec";
    app.apiVersion = std::min<uint32_t>(loader_version, VK_API_VERSION_1_3);
    VkInstanceCreateInfo info{VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO};
    info.pApplicationInfo = &app;
    VkResult r = api_.vkCreateInstance(&info, nullptr, &instance_);
    if (r == VK_ERROR_INCOMPATIBLE_DRIVER) {
      return "no Vulkan driver (ICD) found: install one, e.g. mesa-vulkan-drivers for the lavapipe CPU device, "
             "or check VK_ICD_FILENAMES / VK_DRIVER_FILES";
    }
    if (r != VK_SUCCESS) return "vkCreateInstance failed with VkResult " + std::to_string(r);
#define EDGEC_LOAD_INSTANCE(name) \
  api_.name = reinterpret_cast<PFN_##name>(api_.vkGetInstanceProcAddr(instance_, #name));
    EDGEC_VK_INSTANCE_FUNCS(EDGEC_LOAD_INSTANCE)
#undef EDGEC_LOAD_INSTANCE
    uint32_t n = 0;
    api_.vkEnumeratePhysicalDevices(instance_, &n, nullptr);
    std::vector<VkPhysicalDevice> handles(n);
    api_.vkEnumeratePhysicalDevices(instance_, &n, handles.data());
    uint32_t hidden = HiddenFeatures();
    for (VkPhysicalDevice h : handles) {
      PhysicalInfo p{h};
      api_.vkGetPhysicalDeviceProperties(h, &p.props);
      if (p.props.apiVersion < VK_API_VERSION_1_1) continue;
      VkPhysicalDeviceSubgroupProperties sub{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SUBGROUP_PROPERTIES};
      VkPhysicalDeviceProperties2 props2{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2};
      props2.pNext = &sub;
      api_.vkGetPhysicalDeviceProperties2(h, &props2);
      p.subgroup_size = sub.subgroupSize;
      p.features = QueryFeatures(h, p.props.apiVersion) & ~hidden;
      VkPhysicalDeviceMemoryProperties mem;
      api_.vkGetPhysicalDeviceMemoryProperties(h, &mem);
      for (uint32_t i = 0; i < mem.memoryHeapCount; ++i) {
        if (mem.memoryHeaps[i].flags & VK_MEMORY_HEAP_DEVICE_LOCAL_BIT) p.device_memory += mem.memoryHeaps[i].size;
      }
      physical_.push_back(p);
    }
    // Best device first: discrete, integrated, virtual, then CPU implementations such as lavapipe.
    auto rank = [](const PhysicalInfo& p) {
      switch (p.props.deviceType) {
        case VK_PHYSICAL_DEVICE_TYPE_DISCRETE_GPU: return 0;
        case VK_PHYSICAL_DEVICE_TYPE_INTEGRATED_GPU: return 1;
        case VK_PHYSICAL_DEVICE_TYPE_VIRTUAL_GPU: return 2;
        case VK_PHYSICAL_DEVICE_TYPE_CPU: return 3;
        default: return 4;
      }
    };
    std::stable_sort(physical_.begin(), physical_.end(),
                     [&](const PhysicalInfo& a, const PhysicalInfo& b) { return rank(a) < rank(b); });
    if (physical_.empty()) {
      return "no Vulkan 1.1 device found: the loader found no driver with a usable device (install e.g. "
             "mesa-vulkan-drivers for lavapipe, or a GPU driver)";
    }
    return "";
  }

  uint32_t QueryFeatures(VkPhysicalDevice h, uint32_t api_version) {
    VkPhysicalDevice8BitStorageFeatures s8{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_8BIT_STORAGE_FEATURES};
    VkPhysicalDevice16BitStorageFeatures s16{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_16BIT_STORAGE_FEATURES};
    VkPhysicalDeviceShaderFloat16Int8Features f16{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SHADER_FLOAT16_INT8_FEATURES};
    VkPhysicalDeviceFeatures2 features{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2};
    features.pNext = &s16;
    s16.pNext = &s8;
    s8.pNext = &f16;
    api_.vkGetPhysicalDeviceFeatures2(h, &features);
    uint32_t f = 0;
    if (f16.shaderFloat16) f |= kFloat16;
    if (f16.shaderInt8) f |= kInt8;
    if (features.features.shaderInt16) f |= kInt16;
    if (features.features.shaderInt64) f |= kInt64;
    if (features.features.shaderFloat64) f |= kFloat64;
    if (s8.storageBuffer8BitAccess) f |= kStorage8;
    if (s16.storageBuffer16BitAccess) f |= kStorage16;
    return f;
  }

  // EDGEC_VULKAN_HIDE_FEATURES=shaderFloat16,... makes a device look as if it lacked them, which
  // is how the missing-feature errors are tested on a device that has everything.
  static uint32_t HiddenFeatures() {
    const char* env = std::getenv("EDGEC_VULKAN_HIDE_FEATURES");
    if (!env) return 0;
    uint32_t mask = 0;
    std::stringstream ss(env);
    std::string item;
    while (std::getline(ss, item, ',')) {
      for (auto& [bit, name] : kFeatureNames) {
        if (item == name) mask |= bit;
      }
    }
    return mask;
  }

  Api api_;
  VkInstance instance_ = VK_NULL_HANDLE;
  std::vector<PhysicalInfo> physical_;
  std::unordered_map<int, std::unique_ptr<Gpu>> gpus_;
  std::string error_;
  std::mutex mu_;
};

class VulkanDeviceAPI final : public tvm::runtime::DeviceAPI {
 public:
  static VulkanDeviceAPI* Global() {
    static auto* inst = new VulkanDeviceAPI();
    return inst;
  }

  void SetDevice(Device dev) final { active_device_ = dev.device_id; }

  void GetAttr(Device dev, DeviceAttrKind kind, ffi::Any* rv) final {
    Instance& inst = Instance::Get();
    if (kind == tvm::runtime::kExist) {
      *rv = static_cast<int64_t>(inst.ok() && dev.device_id >= 0 && dev.device_id < inst.count());
      return;
    }
    const PhysicalInfo& p = inst.Physical(dev.device_id);
    const VkPhysicalDeviceLimits& lim = p.props.limits;
    switch (kind) {
      case tvm::runtime::kMaxThreadsPerBlock: *rv = static_cast<int64_t>(lim.maxComputeWorkGroupInvocations); break;
      case tvm::runtime::kWarpSize: *rv = static_cast<int64_t>(p.subgroup_size); break;
      case tvm::runtime::kMaxSharedMemoryPerBlock: *rv = static_cast<int64_t>(lim.maxComputeSharedMemorySize); break;
      case tvm::runtime::kComputeVersion: {
        std::ostringstream os;
        os << VK_API_VERSION_MAJOR(p.props.apiVersion) << "." << VK_API_VERSION_MINOR(p.props.apiVersion);
        *rv = ffi::String(os.str());
        break;
      }
      case tvm::runtime::kDeviceName: *rv = ffi::String(p.props.deviceName); break;
      case tvm::runtime::kMaxThreadDimensions: {
        std::ostringstream os;
        os << "[" << lim.maxComputeWorkGroupSize[0] << ", " << lim.maxComputeWorkGroupSize[1] << ", "
           << lim.maxComputeWorkGroupSize[2] << "]";
        *rv = ffi::String(os.str());
        break;
      }
      case tvm::runtime::kApiVersion: *rv = static_cast<int64_t>(p.props.apiVersion); break;
      case tvm::runtime::kDriverVersion: *rv = static_cast<int64_t>(p.props.driverVersion); break;
      case tvm::runtime::kTotalGlobalMemory: *rv = static_cast<int64_t>(p.device_memory); break;
      default: break;
    }
  }

  void GetTargetProperty(Device dev, const std::string& property, ffi::Any* rv) final {
    const PhysicalInfo& p = Instance::Get().Physical(dev.device_id);
    uint32_t f = p.features;
    if (property == "supports_float16") *rv = static_cast<bool>(f & kFloat16);
    else if (property == "supports_int8") *rv = static_cast<bool>(f & kInt8);
    else if (property == "supports_int16") *rv = static_cast<bool>(f & kInt16);
    else if (property == "supports_int64") *rv = static_cast<bool>(f & kInt64);
    else if (property == "supports_float64") *rv = static_cast<bool>(f & kFloat64);
    else if (property == "supports_8bit_buffer") *rv = static_cast<bool>(f & kStorage8);
    else if (property == "supports_16bit_buffer") *rv = static_cast<bool>(f & kStorage16);
    else if (property == "supports_storage_buffer_storage_class") *rv = true;
    else if (property == "device_name") *rv = ffi::String(p.props.deviceName);
    else if (property == "max_num_threads") *rv = static_cast<int64_t>(p.props.limits.maxComputeWorkGroupInvocations);
    else if (property == "thread_warp_size") *rv = static_cast<int64_t>(p.subgroup_size);
  }

  void* AllocDataSpace(Device dev, size_t nbytes, size_t alignment, DLDataType type_hint) final {
    return Instance::Get().Device(dev.device_id).Alloc(nbytes);
  }

  void FreeDataSpace(Device dev, void* ptr) final {
    auto* buf = static_cast<Buffer*>(ptr);
    Instance::Get().Device(buf->device_id).Free(buf);
  }

  void StreamSync(Device dev, TVMStreamHandle stream) final { Instance::Get().Device(dev.device_id).Sync(); }

 protected:
  void CopyDataFromTo(const void* from, size_t from_offset, void* to, size_t to_offset, size_t num_bytes,
                      Device dev_from, Device dev_to, DLDataType type_hint, TVMStreamHandle stream) final {
    bool from_dev = dev_from.device_type == kDLVulkan;
    bool to_dev = dev_to.device_type == kDLVulkan;
    if (!from_dev && !to_dev) {
      std::memcpy(static_cast<char*>(to) + to_offset, static_cast<const char*>(from) + from_offset, num_bytes);
      return;
    }
    if (from_dev && to_dev && dev_from.device_id != dev_to.device_id) {
      TVM_FFI_THROW(RuntimeError) << "copies between two Vulkan devices are not supported";
    }
    int id = from_dev ? dev_from.device_id : dev_to.device_id;
    Instance::Get().Device(id).Copy(from, from_offset, to, to_offset, num_bytes, from_dev, to_dev);
  }

 public:
  int active_device() const { return active_device_; }

 private:
  static thread_local int active_device_;
};
thread_local int VulkanDeviceAPI::active_device_ = 0;

// ---- kernels ---------------------------------------------------------------------------

struct ScalarArg {
  std::string dtype;
  uint32_t offset;
};

struct KernelInfo {
  std::string name;
  uint32_t num_buffers = 0;
  std::vector<ScalarArg> scalars;
  std::vector<uint32_t> params;  // call order: a binding, or kScalarBit | index into scalars
  uint32_t push_size = 0;
  std::vector<std::string> launch_tags;
  uint32_t local_size[3] = {1, 1, 1};
  uint32_t features = 0;
  uint32_t grid_push_offset = UINT32_MAX;  // set: the shader reads the 1-D grid size here
  std::vector<uint32_t> spirv;
  std::string source;
};

struct Pipeline {
  VkDescriptorSetLayout set_layout = VK_NULL_HANDLE;
  VkPipelineLayout layout = VK_NULL_HANDLE;
  VkPipeline pipeline = VK_NULL_HANDLE;
};

class Reader {
 public:
  Reader(const char* data, size_t size) : p_(data), end_(data + size) {}
  uint32_t U32() {
    Need(4);
    uint32_t v;
    std::memcpy(&v, p_, 4);
    p_ += 4;
    return v;
  }
  std::string Str() {
    uint32_t n = U32();
    Need(n);
    std::string s(p_, n);
    p_ += n;
    return s;
  }
  void Bytes(void* out, size_t n) {
    Need(n);
    std::memcpy(out, p_, n);
    p_ += n;
  }

 private:
  void Need(size_t n) {
    if (static_cast<size_t>(end_ - p_) < n) TVM_FFI_THROW(ValueError) << "truncated edgec Vulkan module";
  }
  const char* p_;
  const char* end_;
};

static const char kMagic[] = "EDGECVK1";
static constexpr uint32_t kScalarBit = 0x80000000u;

class VulkanModuleObj : public ffi::ModuleObj {
 public:
  VulkanModuleObj(std::string blob, std::vector<KernelInfo> kernels) : blob_(std::move(blob)), kernels_(std::move(kernels)) {
    for (size_t i = 0; i < kernels_.size(); ++i) index_[kernels_[i].name] = i;
  }

  const char* kind() const final { return "vulkan"; }
  int GetPropertyMask() const final {
    return ffi::Module::kBinarySerializable | ffi::Module::kRunnable;
  }

  ffi::Optional<ffi::Function> GetFunction(const ffi::String& name) final {
    auto it = index_.find(std::string(name));
    if (it == index_.end()) return std::nullopt;
    size_t k = it->second;
    ffi::ObjectPtr<VulkanModuleObj> self = ffi::details::ObjectUnsafe::ObjectPtrFromUnowned<VulkanModuleObj>(static_cast<ffi::Object*>(this));
    return ffi::Function::FromPacked([self, k](ffi::PackedArgs args, ffi::Any* rv) { self->Launch(k, args); });
  }

  ffi::Bytes SaveToBytes() const final { return ffi::Bytes(blob_); }

  ffi::String InspectSource(const ffi::String& format) const final {
    std::string out;
    for (auto& k : kernels_) out += "// kernel " + k.name + "\n" + k.source + "\n";
    return out;
  }

  static std::vector<KernelInfo> Parse(const std::string& blob) {
    Reader r(blob.data(), blob.size());
    char magic[8];
    r.Bytes(magic, 8);
    if (std::memcmp(magic, kMagic, 8) != 0) TVM_FFI_THROW(ValueError) << "not an edgec Vulkan module";
    uint32_t n = r.U32();
    std::vector<KernelInfo> kernels(n);
    for (auto& k : kernels) {
      k.name = r.Str();
      k.num_buffers = r.U32();
      uint32_t ns = r.U32();
      for (uint32_t i = 0; i < ns; ++i) {
        ScalarArg s;
        s.dtype = r.Str();
        s.offset = r.U32();
        k.scalars.push_back(s);
      }
      uint32_t np = r.U32();
      for (uint32_t i = 0; i < np; ++i) k.params.push_back(r.U32());
      k.push_size = r.U32();
      uint32_t nt = r.U32();
      for (uint32_t i = 0; i < nt; ++i) k.launch_tags.push_back(r.Str());
      for (uint32_t& v : k.local_size) v = r.U32();
      k.features = r.U32();
      k.grid_push_offset = r.U32();
      uint32_t nw = r.U32();
      k.spirv.resize(nw);
      r.Bytes(k.spirv.data(), nw * 4);
      k.source = r.Str();
    }
    return kernels;
  }

 private:
  void Launch(size_t k, ffi::PackedArgs args) {
    const KernelInfo& info = kernels_[k];
    size_t expected = info.num_buffers + info.scalars.size() + info.launch_tags.size();
    if (static_cast<size_t>(args.size()) != expected) {
      TVM_FFI_THROW(RuntimeError) << "kernel " << info.name << " takes " << expected << " arguments, got "
                                  << args.size();
    }
    if (info.params.size() != info.num_buffers + info.scalars.size()) {
      TVM_FFI_THROW(RuntimeError) << "kernel " << info.name << " has inconsistent parameter metadata";
    }
    std::vector<Buffer*> buffers(info.num_buffers);
    std::vector<uint8_t> push(info.push_size);
    for (size_t p = 0; p < info.params.size(); ++p) {
      uint32_t code = info.params[p];
      if (!(code & kScalarBit)) {
        buffers.at(code) = static_cast<Buffer*>(args[p].cast<void*>());
        continue;
      }
      const ScalarArg& s = info.scalars.at(code & ~kScalarBit);
      ffi::AnyView v = args[p];
      uint8_t* dst = push.data() + s.offset;
      if (s.dtype == "int32" || s.dtype == "uint32") {
        int32_t x = static_cast<int32_t>(v.cast<int64_t>());
        std::memcpy(dst, &x, 4);
      } else if (s.dtype == "int64" || s.dtype == "uint64") {
        int64_t x = v.cast<int64_t>();
        std::memcpy(dst, &x, 8);
      } else if (s.dtype == "float32") {
        float x = static_cast<float>(v.cast<double>());
        std::memcpy(dst, &x, 4);
      } else if (s.dtype == "float64") {
        double x = v.cast<double>();
        std::memcpy(dst, &x, 8);
      } else if (s.dtype == "bool") {
        int32_t x = v.cast<bool>() ? 1 : 0;
        std::memcpy(dst, &x, 4);
      } else {
        TVM_FFI_THROW(RuntimeError) << "kernel " << info.name << ": scalar argument of type " << s.dtype
                                    << " is not supported";
      }
    }
    int device_id = info.num_buffers ? buffers[0]->device_id : VulkanDeviceAPI::Global()->active_device();
    uint32_t grid[3] = {1, 1, 1};
    size_t base = info.params.size();
    for (size_t i = 0; i < info.launch_tags.size(); ++i) {
      const std::string& tag = info.launch_tags[i];
      if (tag.rfind("blockIdx.", 0) == 0 || tag.rfind("threadIdx.", 0) == 0) {
        int axis = tag.back() - 'x';
        int64_t extent = args[base + i].cast<int64_t>();
        if (tag[0] == 'b') {
          grid[axis] = static_cast<uint32_t>(extent);
        } else if (extent != info.local_size[axis]) {
          TVM_FFI_THROW(RuntimeError) << "kernel " << info.name << " was compiled for " << tag << " = "
                                      << info.local_size[axis] << " but launched with " << extent;
        }
      }
    }
    if (grid[0] == 0 || grid[1] == 0 || grid[2] == 0) return;
    Gpu& gpu = Instance::Get().Device(device_id);
    const VkPhysicalDeviceLimits& lim = gpu.info().props.limits;
    if (info.grid_push_offset != UINT32_MAX) {
      uint32_t n = grid[0];
      std::memcpy(push.data() + info.grid_push_offset, &n, 4);
      if (n > lim.maxComputeWorkGroupCount[0]) {
        grid[1] = (n + lim.maxComputeWorkGroupCount[0] - 1) / lim.maxComputeWorkGroupCount[0];
        grid[0] = (n + grid[1] - 1) / grid[1];
      }
    }
    for (int a = 0; a < 3; ++a) {
      if (grid[a] > lim.maxComputeWorkGroupCount[a]) {
        TVM_FFI_THROW(RuntimeError) << "kernel " << info.name << " needs " << grid[a] << " workgroups along "
                                    << "xyz"[a] << "; Vulkan device " << gpu.info().props.deviceName
                                    << " allows " << lim.maxComputeWorkGroupCount[a];
      }
    }
    std::lock_guard<std::mutex> lock(gpu.mutex());
    const Pipeline& p = GetPipeline(gpu, device_id, k);
    gpu.Dispatch(p.pipeline, p.layout, p.set_layout, buffers, push, grid);
  }

  const Pipeline& GetPipeline(Gpu& gpu, int device_id, size_t k) {
    std::lock_guard<std::mutex> lock(mu_);
    auto& per_device = pipelines_[device_id];
    if (per_device.empty()) per_device.resize(kernels_.size());
    Pipeline& p = per_device[k];
    if (p.pipeline != VK_NULL_HANDLE) return p;
    const KernelInfo& info = kernels_[k];
    const PhysicalInfo& phys = gpu.info();
    uint32_t missing = info.features & ~phys.features;
    if (missing) {
      TVM_FFI_THROW(RuntimeError) << "Vulkan device " << phys.props.deviceName << " lacks " << FeatureList(missing)
                                  << ", which kernel " << info.name << " needs (compile for a target without "
                                  << "float16/int8, or run on a device that has them)";
    }
    uint32_t threads = info.local_size[0] * info.local_size[1] * info.local_size[2];
    if (threads > phys.props.limits.maxComputeWorkGroupInvocations) {
      TVM_FFI_THROW(RuntimeError) << "kernel " << info.name << " uses " << threads << " threads per workgroup; "
                                  << phys.props.deviceName << " allows "
                                  << phys.props.limits.maxComputeWorkGroupInvocations;
    }
    const Api& api = gpu.api();
    VkDevice dev = gpu.device();
    std::vector<VkDescriptorSetLayoutBinding> bindings(info.num_buffers);
    for (uint32_t i = 0; i < info.num_buffers; ++i) {
      bindings[i] = {i, VK_DESCRIPTOR_TYPE_STORAGE_BUFFER, 1, VK_SHADER_STAGE_COMPUTE_BIT, nullptr};
    }
    VkDescriptorSetLayoutCreateInfo dinfo{VK_STRUCTURE_TYPE_DESCRIPTOR_SET_LAYOUT_CREATE_INFO};
    dinfo.bindingCount = bindings.size();
    dinfo.pBindings = bindings.data();
    VK_CHECK(api.vkCreateDescriptorSetLayout(dev, &dinfo, nullptr, &p.set_layout));
    VkPushConstantRange range{VK_SHADER_STAGE_COMPUTE_BIT, 0, info.push_size};
    VkPipelineLayoutCreateInfo linfo{VK_STRUCTURE_TYPE_PIPELINE_LAYOUT_CREATE_INFO};
    linfo.setLayoutCount = 1;
    linfo.pSetLayouts = &p.set_layout;
    linfo.pushConstantRangeCount = info.push_size ? 1 : 0;
    linfo.pPushConstantRanges = &range;
    VK_CHECK(api.vkCreatePipelineLayout(dev, &linfo, nullptr, &p.layout));
    VkShaderModuleCreateInfo sinfo{VK_STRUCTURE_TYPE_SHADER_MODULE_CREATE_INFO};
    sinfo.codeSize = info.spirv.size() * 4;
    sinfo.pCode = info.spirv.data();
    VkShaderModule shader;
    VK_CHECK(api.vkCreateShaderModule(dev, &sinfo, nullptr, &shader));
    VkComputePipelineCreateInfo cinfo{VK_STRUCTURE_TYPE_COMPUTE_PIPELINE_CREATE_INFO};
    cinfo.stage = {VK_STRUCTURE_TYPE_PIPELINE_SHADER_STAGE_CREATE_INFO};
    cinfo.stage.stage = VK_SHADER_STAGE_COMPUTE_BIT;
    cinfo.stage.module = shader;
    cinfo.stage.pName = "main";
    cinfo.layout = p.layout;
    VkResult r = api.vkCreateComputePipelines(dev, VK_NULL_HANDLE, 1, &cinfo, nullptr, &p.pipeline);
    api.vkDestroyShaderModule(dev, shader, nullptr);
    if (r != VK_SUCCESS) {
      p.pipeline = VK_NULL_HANDLE;
      TVM_FFI_THROW(RuntimeError) << "Vulkan device " << phys.props.deviceName << " could not build kernel "
                                  << info.name << " (VkResult " << r << ")";
    }
    return p;
  }

  std::string blob_;
  std::vector<KernelInfo> kernels_;
  std::unordered_map<std::string, size_t> index_;
  std::unordered_map<int, std::vector<Pipeline>> pipelines_;  // pipelines leak with the process
  std::mutex mu_;
};

ffi::Module LoadFromBytes(const ffi::Bytes& bytes) {
  std::string blob(bytes.data(), bytes.size());
  auto kernels = VulkanModuleObj::Parse(blob);
  return ffi::Module(ffi::make_object<VulkanModuleObj>(std::move(blob), std::move(kernels)));
}

std::string DeviceInfo(int id) {
  Instance& inst = Instance::Get();
  std::ostringstream os;
  if (!inst.ok()) {
    os << "error=" << inst.error() << "\n";
    return os.str();
  }
  const PhysicalInfo& p = inst.Physical(id);
  const VkPhysicalDeviceLimits& lim = p.props.limits;
  os << "name=" << p.props.deviceName << "\n"
     << "device_type=" << p.props.deviceType << "\n"
     << "api_version=" << VK_API_VERSION_MAJOR(p.props.apiVersion) << "." << VK_API_VERSION_MINOR(p.props.apiVersion)
     << "." << VK_API_VERSION_PATCH(p.props.apiVersion) << "\n"
     << "max_threads_per_block=" << lim.maxComputeWorkGroupInvocations << "\n"
     << "max_workgroup_size=" << lim.maxComputeWorkGroupSize[0] << "," << lim.maxComputeWorkGroupSize[1] << ","
     << lim.maxComputeWorkGroupSize[2] << "\n"
     << "max_shared_memory_per_block=" << lim.maxComputeSharedMemorySize << "\n"
     << "max_push_constants_size=" << lim.maxPushConstantsSize << "\n"
     << "subgroup_size=" << p.subgroup_size << "\n"
     << "vendor_id=" << p.props.vendorID << "\n"
     << "features=" << FeatureList(p.features) << "\n"
     << "device_count=" << inst.count() << "\n";
  return os.str();
}

}  // namespace edgec_vulkan

TVM_FFI_STATIC_INIT_BLOCK() {
  namespace refl = tvm::ffi::reflection;
  using namespace edgec_vulkan;
  refl::GlobalDef()
      .def_packed("device_api.vulkan",
                  [](tvm::ffi::PackedArgs, tvm::ffi::Any* rv) {
                    *rv = static_cast<void*>(static_cast<tvm::runtime::DeviceAPI*>(VulkanDeviceAPI::Global()));
                  })
      .def("device_api.vulkan.get_target_property",
           [](tvm::Device dev, const tvm::ffi::String& property) {
             tvm::ffi::Any rv;
             VulkanDeviceAPI::Global()->GetTargetProperty(dev, std::string(property), &rv);
             return rv;
           })
      .def("ffi.Module.load_from_bytes.vulkan", LoadFromBytes)
      .def("edgec.vulkan.device_info", [](int id) { return tvm::ffi::String(DeviceInfo(id)); });
}
