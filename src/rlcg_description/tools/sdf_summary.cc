// Loads an SDF world with libsdformat (Gazebo's own parser), strictly: warnings and unrecognised
// elements are errors. Prints a JSON summary of what the parser understood (models, poses, box
// sizes, friction, camera sensor) so that tests can compare it with rlcg's config.
//
// Build: g++ -O1 sdf_summary.cc $(pkg-config --cflags --libs sdformat12) -o sdf_summary
// (sdformat12 is the newest libsdformat packaged by Debian 12; Gazebo Harmonic ships sdformat14,
// which reads the same SDF 1.9 files.)
#include <cstdio>
#include <iostream>
#include <sstream>
#include <string>

#include <sdf/sdf.hh>

namespace {

std::string Quote(const std::string &s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + "\"";
}

std::string Num(double v) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.12g", v);
  return buf;
}

template <typename P>
std::string PoseJson(const P &pose) {
  return "[" + Num(pose.Pos().X()) + "," + Num(pose.Pos().Y()) + "," + Num(pose.Pos().Z()) + "," +
         Num(pose.Rot().Roll()) + "," + Num(pose.Rot().Pitch()) + "," + Num(pose.Rot().Yaw()) + "]";
}

double Friction(const sdf::Collision *col) {
  sdf::ElementPtr el = col->Element();
  for (const char *name : {"surface", "friction", "ode"}) {
    if (!el || !el->HasElement(name)) return -1.0;
    el = el->GetElement(name);
  }
  return el->HasElement("mu") ? el->Get<double>("mu") : -1.0;
}

std::string GeometryJson(const sdf::Geometry *g) {
  switch (g->Type()) {
    case sdf::GeometryType::BOX: {
      auto s = g->BoxShape()->Size();
      return "{\"type\":\"box\",\"size\":[" + Num(s.X()) + "," + Num(s.Y()) + "," + Num(s.Z()) + "]}";
    }
    case sdf::GeometryType::CYLINDER:
      return "{\"type\":\"cylinder\",\"radius\":" + Num(g->CylinderShape()->Radius()) +
             ",\"length\":" + Num(g->CylinderShape()->Length()) + "}";
    case sdf::GeometryType::SPHERE:
      return "{\"type\":\"sphere\",\"radius\":" + Num(g->SphereShape()->Radius()) + "}";
    case sdf::GeometryType::PLANE:
      return "{\"type\":\"plane\"}";
    default:
      return "{\"type\":\"other\"}";
  }
}

}  // namespace

int main(int argc, char **argv) {
  if (argc != 2) {
    std::cerr << "usage: sdf_summary WORLD.sdf\n";
    return 2;
  }
  sdf::ParserConfig config;
  config.SetWarningsPolicy(sdf::EnforcementPolicy::ERR);
  config.SetUnrecognizedElementsPolicy(sdf::EnforcementPolicy::ERR);
  sdf::Root root;
  sdf::Errors errors = root.Load(argv[1], config);
  if (!errors.empty()) {
    for (const auto &e : errors) std::cerr << "sdformat error: " << e << "\n";
    return 1;
  }
  if (root.WorldCount() != 1) {
    std::cerr << "expected one world, found " << root.WorldCount() << "\n";
    return 1;
  }
  const sdf::World *world = root.WorldByIndex(0);
  std::ostringstream out;
  auto g = world->Gravity();
  out << "{\"sdf_version\":" << Quote(root.Version()) << ",\"world\":" << Quote(world->Name())
      << ",\"gravity\":[" << Num(g.X()) << "," << Num(g.Y()) << "," << Num(g.Z()) << "]"
      << ",\"max_step_size\":" << Num(world->PhysicsDefault()->MaxStepSize()) << ",\"models\":[";
  for (uint64_t m = 0; m < world->ModelCount(); ++m) {
    const sdf::Model *model = world->ModelByIndex(m);
    out << (m ? "," : "") << "{\"name\":" << Quote(model->Name()) << ",\"static\":" << (model->Static() ? "true" : "false")
        << ",\"pose\":" << PoseJson(model->RawPose()) << ",\"links\":[";
    for (uint64_t l = 0; l < model->LinkCount(); ++l) {
      const sdf::Link *link = model->LinkByIndex(l);
      out << (l ? "," : "") << "{\"name\":" << Quote(link->Name()) << ",\"mass\":" << Num(link->Inertial().MassMatrix().Mass())
          << ",\"collisions\":[";
      for (uint64_t c = 0; c < link->CollisionCount(); ++c) {
        const sdf::Collision *col = link->CollisionByIndex(c);
        out << (c ? "," : "") << "{\"name\":" << Quote(col->Name()) << ",\"pose\":" << PoseJson(col->RawPose())
            << ",\"geometry\":" << GeometryJson(col->Geom()) << ",\"mu\":" << Num(Friction(col)) << "}";
      }
      out << "],\"visuals\":" << link->VisualCount() << ",\"sensors\":[";
      for (uint64_t s = 0; s < link->SensorCount(); ++s) {
        const sdf::Sensor *sensor = link->SensorByIndex(s);
        out << (s ? "," : "") << "{\"name\":" << Quote(sensor->Name()) << ",\"type\":" << Quote(sensor->TypeStr())
            << ",\"topic\":" << Quote(sensor->Topic()) << ",\"update_rate\":" << Num(sensor->UpdateRate());
        if (const sdf::Camera *cam = sensor->CameraSensor()) {
          out << ",\"camera\":{\"horizontal_fov\":" << Num(cam->HorizontalFov().Radian()) << ",\"width\":" << cam->ImageWidth()
              << ",\"height\":" << cam->ImageHeight() << ",\"near\":" << Num(cam->NearClip()) << ",\"far\":" << Num(cam->FarClip())
              << "}";
        }
        out << "}";
      }
      out << "]}";
    }
    out << "]}";
  }
  out << "]}";
  std::cout << out.str() << std::endl;
  return 0;
}
